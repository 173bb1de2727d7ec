-- Replies, updates and replacements name the documents they answer or act on in response_for:
-- find them from either end.
CREATE INDEX document_response_for ON exchange.document USING gin ((header -> 'response_for'));
