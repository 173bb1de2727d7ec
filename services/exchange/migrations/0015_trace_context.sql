-- W3C trace context (services/common/tracing.py) of the work that wrote the row: the relay
-- publishes an outbox row in the trace of the Submit or Acknowledge that queued it, and the
-- admin console shows a document's trace id. NULL when tracing is off (no OTLP endpoint) and
-- for rows written before this migration.
ALTER TABLE exchange.outbox ADD COLUMN traceparent text;
ALTER TABLE exchange.document ADD COLUMN traceparent text;
