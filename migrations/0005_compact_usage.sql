-- gpuledger 0005: compact usage rows. At full fleet the ledger takes about 430 million usage
-- events a month, and writing each one's JSON as jsonb was most of the ingester's cost in
-- PostgreSQL (about 5.5 µs of the backend's CPU per row, against 1.6 µs for the same facts as
-- typed columns; docs/benchmarks.md) and half of every row's bytes. From here on a usage row
-- carries its event in typed columns and no payload; every other kind (reference data, closes,
-- budget, checkpoints: a few thousand rows) keeps its jsonb payload. Usage rows written before
-- this migration keep theirs too, and readers accept both (store::ledger_row).
--
-- The hash chain is unchanged: it covers the event's canonical payload bytes, which are the same
-- whether they are rebuilt from the columns or from the jsonb (domain::usage::UsageRecorded).
--
-- The GPU-time guard moves into the ledger as well: usage rows are indexed by (gpu_id,
-- interval_end), so the overlap check reads the ledger itself instead of a second table holding
-- a copy of each interval. gpu_occupancy keeps the intervals of rows written before this
-- migration and is only read from now on.
--
-- Event ids: the unique key becomes (event_id, tenant_id), still one event id per tenant. With
-- the id first, time-ordered ids (UUIDv7, which producers are asked to use) go in at the right
-- edge of the index, and even random ones compare on 16 fixed bytes before any text.

ALTER TABLE ledger_events
    ALTER COLUMN payload DROP NOT NULL,
    ADD COLUMN gpu_id uuid,
    ADD COLUMN interval_end timestamptz,
    ADD COLUMN gpu_seconds numeric,
    ADD COLUMN gpu_sku text,
    ADD COLUMN node text,
    ADD COLUMN project text,
    ADD COLUMN job text,
    ADD COLUMN labels jsonb,
    ADD COLUMN source text;

-- A row carries either a payload, or (a usage event) its typed columns: never neither, never a
-- half-filled usage row, and no typed columns on a row that has a payload.
ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_content CHECK (
    CASE WHEN payload IS NOT NULL THEN
        num_nonnulls(gpu_id, interval_end, gpu_seconds, gpu_sku, node, project, job, labels, source) = 0
    ELSE
        kind = 'usage.recorded' AND num_nulls(gpu_id, interval_end, gpu_seconds, gpu_sku, node, project, source) = 0
        AND interval_end > occurred_at AND interval_end <= occurred_at + interval '1 hour'
        AND gpu_seconds >= 0 AND gpu_seconds < 'Infinity'
    END
);

-- The GPU-time guard. A row overlaps [lo, hi) when it ends after lo and starts before hi, and
-- rows are at most an hour long: one probe per GPU on (gpu_id, interval_end) finds every row
-- ending in (lo, hi + 1 hour) (store::append). Usage that arrives in time order overlaps nothing,
-- and the probe finds no entry at all.
CREATE INDEX ledger_events_gpu ON ledger_events (gpu_id, interval_end) WHERE gpu_id IS NOT NULL;

ALTER TABLE ledger_event_ids DROP CONSTRAINT ledger_event_ids_pkey;
ALTER TABLE ledger_event_ids ADD PRIMARY KEY (event_id, tenant_id);

-- The API's walled view of the log shows the new columns too.
CREATE OR REPLACE VIEW api_ledger_events WITH (security_barrier) AS
    SELECT seq, occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id,
           event_id, hash, payload, gpu_id, interval_end, gpu_seconds, gpu_sku, node, project, job, labels, source
      FROM ledger_events
     WHERE tenant_id = current_setting('gpuledger.tenant', true)
        OR current_setting('gpuledger.scope', true) = 'all';

-- Usage events keep no fingerprint: a second message with a known event id is a duplicate when
-- its content equals the ledgered row's (which shares its GPU time, so the overlap check has it
-- at hand), and a conflict otherwise. Reference data and closes keep theirs.
ALTER TABLE ledger_event_ids ALTER COLUMN fingerprint DROP NOT NULL;
