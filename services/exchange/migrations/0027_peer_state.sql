-- Federation operations: what each peer's forwarder last reported (its circuit, last contact,
-- failures, throughput), so that any process of the hub answers ListPeers the same (only the
-- first worker runs the forwarders). One row per peer, rewritten by its forwarder.
CREATE TABLE exchange.peer_state (
    hub                  text             PRIMARY KEY,
    kind                 text             NOT NULL,
    address              text             NOT NULL,
    circuit              text             NOT NULL CHECK (circuit IN ('closed', 'open', 'half_open')),
    consecutive_failures integer          NOT NULL,
    last_contact         timestamptz,
    last_failure_at      timestamptz,
    last_error           text             NOT NULL DEFAULT '',
    forwarded            bigint           NOT NULL,
    refused              bigint           NOT NULL,
    failures             bigint           NOT NULL,
    forwarded_per_minute double precision NOT NULL,
    reported_at          timestamptz      NOT NULL
);

-- What waits for each peer, and its dead letters, without scanning every agency's copies.
CREATE INDEX delivery_via_hub ON exchange.delivery (via_hub, state, accepted_at)
    WHERE via_hub IS NOT NULL;
-- Copies accepted from each peer lately (its inbound throughput).
CREATE INDEX forwarded_copy_from_hub ON exchange.forwarded_copy (from_hub, accepted_at);
