"""A history of a few thousand documents for tests of statements' plans
(tests/integration/test_statement_plans.py, test_adapter_plans.py): most copies and notices done
with, a few live, as the exchange's tables hold them after a while, so that a statement that walks
a table reads thousands of rows where its probes read a few."""

from __future__ import annotations

import asyncpg

# 3,000 documents from 20 senders (a bench document's width: its rows' size is what a scan of the
# table costs the planner), three of them replies to D1500, a copy each to 199 agencies and every
# tenth a second to one that receives many (A200, a ministry: 300): 3 % of the copies live
# (accepted, queued, pushed), the others acknowledged or dead-lettered; a 01 and its notice to
# the sender per acknowledged copy, 2 % of them unacknowledged; the outbox rows the relay has yet
# to settle; 3,000 notices never handed over to one agency that is not reading them (A199),
# about copies it did not send; and the directory's 2,000 certificate bindings.
HISTORY = """
INSERT INTO exchange.blob (sha256, size, storage_id)
SELECT md5(i::text) || md5((-i)::text), 100, gen_random_uuid() FROM generate_series(1, 3000) i;
INSERT INTO exchange.blob_owner (sha256, agency)
SELECT md5(i::text) || md5((-i)::text), 'A' || lpad((i % 20)::text, 3, '0')
FROM generate_series(1, 3000) i;
INSERT INTO exchange.blob_chunk (storage_id, start_offset, data)
SELECT storage_id, 0, convert_to(repeat('x', 100), 'UTF8') FROM exchange.blob;
INSERT INTO exchange.document (uuid, document_id, sender, consignment_id, fingerprint,
    business_type, header, submitted_at, verification)
SELECT gen_random_uuid(), 'D' || i, 'A' || lpad((i % 20)::text, 3, '0'), 'C' || i, md5(i::text),
    0, jsonb_build_object('sender', 'A' || lpad((i % 20)::text, 3, '0'),
        'recipients', jsonb_build_array('A001'), 'code_number', i::text,
        'code_notation', 'DT-TAI', 'promulgation_date', '2026-12-01',
        'subject', repeat('Về việc sáp nhập đơn vị hành chính cấp xã ', 3),
        'promulgation_place', 'Hà Nội', 'document_type', 1, 'type_name', 'Công văn',
        'content', '', 'signer_competence', 'KT. GIÁM ĐỐC', 'signer_position', 'Phó Giám đốc',
        'signer_full_name', 'Nguyễn Văn A', 'due_date', NULL, 'priority', 0,
        'business_type', 0, 'response_for', '[]'::jsonb, 'to_places', '[]'::jsonb),
    timestamptz '2026-12-01' + i * interval '1 minute',
    jsonb_build_object('signatures', jsonb_build_array(jsonb_build_object('role', 'person',
        'status', 'valid', 'subject', repeat('CN=Nguyễn Văn A, ', 6),
        'issuer', repeat('CN=Bench CA, ', 6))))
FROM generate_series(1, 3000) i;
UPDATE exchange.document SET header = jsonb_set(header, '{response_for}', '["D1500"]')
WHERE document_id IN ('D1510', 'D1520', 'D1530');
INSERT INTO exchange.delivery (id, document_uuid, position, requested_recipient, recipient,
    state, accepted_at, queued_at, pushed_at, push_count)
SELECT gen_random_uuid(), d.uuid, k, r, r,
    CASE WHEN d.n % 100 = 0 THEN 'pushed' WHEN d.n % 100 = 1 THEN 'queued'
         WHEN d.n % 100 = 2 THEN 'accepted' WHEN d.n % 500 = 3 THEN 'dead_lettered'
         ELSE 'acknowledged' END,
    d.submitted_at, d.submitted_at, d.submitted_at, 1
FROM (SELECT uuid, submitted_at, row_number() OVER (ORDER BY submitted_at) n
      FROM exchange.document) d
CROSS JOIN LATERAL (
    SELECT k, CASE k WHEN 0 THEN 'A' || lpad(((d.n + 1) % 199)::text, 3, '0') ELSE 'A200' END r
    FROM generate_series(0, CASE WHEN d.n % 10 = 0 THEN 1 ELSE 0 END) k
) c;
UPDATE exchange.delivery SET acknowledged_at = accepted_at, transport_receipt = '\\x00'
WHERE state = 'acknowledged';
INSERT INTO exchange.delivery_status (delivery_id, status_id, code, occurred_at, recorded_at,
    reported_by)
SELECT id, 's' || id, '01', acknowledged_at, acknowledged_at, recipient
FROM exchange.delivery WHERE acknowledged_at IS NOT NULL;
INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at, pushed_at,
    push_count, acknowledged_at)
SELECT gen_random_uuid(), doc.sender, 'status', s.delivery_id, s.id, s.recorded_at,
    s.recorded_at, 1, CASE WHEN s.id % 50 = 0 THEN NULL ELSE s.recorded_at END
FROM exchange.delivery_status s JOIN exchange.delivery d ON d.id = s.delivery_id
JOIN exchange.document doc ON doc.uuid = d.document_uuid;
INSERT INTO exchange.notice (id, agency, kind, delivery_id, status_row, created_at)
SELECT gen_random_uuid(), 'A199', 'status', delivery_id, id, recorded_at
FROM exchange.delivery_status;
INSERT INTO exchange.outbox (routing_key, message_id, message_type, payload, delivery_id,
    published_at)
SELECT recipient, id::text, 't', '\\x00', id,
    CASE WHEN state = 'accepted' THEN NULL ELSE accepted_at END
FROM exchange.delivery;
INSERT INTO directory.certificate_binding (spki_sha256, agency_code, role, subject, issuer,
    serial, not_after, bound_by)
SELECT md5('k' || i) || md5('-k' || i), 'A' || lpad((i % 200)::text, 3, '0'), 'person',
    repeat('CN=Nguyễn Văn A, ', 6), repeat('CN=Bench CA, ', 6), i::text, NULL, 'operator'
FROM generate_series(1, 2000) i;
"""

# The log: one document's 200 entries, the statistics taken then (a new axis's first
# autoanalyze), then four entries for each document of the history.
LOG = """
INSERT INTO ledger.entry (seq, entry_type, doc_id, logged_at, body, leaf_hash)
SELECT seq, 'x', doc_id, now(), body, sha256('\\x00'::bytea || body)
FROM (SELECT seq, doc_id, convert_to(seq::text, 'UTF8') body FROM (
    SELECT i - 1 AS seq, '00000000-0000-4000-8000-000000000001'::uuid doc_id
    FROM generate_series(1, 200) i
) e) e;
ANALYZE ledger.entry_p0000;
INSERT INTO ledger.entry (seq, entry_type, doc_id, logged_at, body, leaf_hash)
SELECT seq, 'x', uuid, now(), body, sha256('\\x00'::bytea || body)
FROM (SELECT 199 + row_number() OVER (ORDER BY k, d.submitted_at) seq, d.uuid,
          convert_to(d.uuid::text || k, 'UTF8') body
      FROM exchange.document d CROSS JOIN generate_series(1, 4) k) e;
"""


async def without_autovacuum(conn: asyncpg.Connection) -> None:
    """The statistics stay those the test takes, whatever autovacuum would do meanwhile."""
    for (table,) in await conn.fetch(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname IN ('exchange', 'ledger', 'directory') "
        "AND c.relkind = 'r'"
    ):
        await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
