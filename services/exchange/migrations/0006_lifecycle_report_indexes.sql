-- Monthly statistics select copies and documents by the time they were accepted.
CREATE INDEX delivery_accepted ON exchange.delivery (accepted_at);
CREATE INDEX document_submitted ON exchange.document (submitted_at);
