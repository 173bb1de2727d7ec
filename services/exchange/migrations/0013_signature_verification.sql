-- What the hub verified of a document's signatures (mode signed / transport_attested / unsigned,
-- and each signature checked: manifest, PAdES, XML-DSig), kept with the document so that Track,
-- the push and the admin console show it; and the original edXML file when the document came as
-- edXML (a blob like an attachment), handed byte for byte to edXML recipients.
ALTER TABLE exchange.document ADD COLUMN verification jsonb;
ALTER TABLE exchange.document ADD COLUMN envelope jsonb;
