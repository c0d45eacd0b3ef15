-- gpuledger 0001: the append-only ledger, its streams (hash chain heads and Kafka offsets),
-- the event-id and GPU-occupancy guards, the quarantine, and the hourly usage projection.

-- The role the ingester (and later every writer) runs as: it may append and read, never change.
-- Roles are cluster-wide: two databases migrating at once may race to create it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gpuledger_writer') THEN
        CREATE ROLE gpuledger_writer NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- Refuses any change to an append-only table, whoever asks (the table owner and superusers too).
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'gpuledger: % on % is refused, the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- One row per stream of ledger rows: a Kafka topic-partition, or another writer (e.g. 'cli').
-- It holds the chain head, the next Kafka offset, the counts that account for every offset,
-- and the fence: the owner and epoch of the ingester that claimed the partition last.
CREATE TABLE ledger_streams (
    stream_id      integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic          text NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset    bigint,
    head_pos       bigint NOT NULL DEFAULT 0,
    head_hash      bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
    ledgered       bigint NOT NULL DEFAULT 0,
    duplicates     bigint NOT NULL DEFAULT 0,
    quarantined    bigint NOT NULL DEFAULT 0,
    owner          text,
    epoch          bigint NOT NULL DEFAULT 0,
    claimed_at     timestamptz,
    UNIQUE (topic, kafka_partition),
    CHECK (octet_length(head_hash) = 32),
    CHECK (next_offset IS NULL OR next_offset >= 0)
);

CREATE SEQUENCE ledger_seq AS bigint;

-- Every ledger event of every kind. Partitioned by month of occurred_at (about 430 million
-- usage rows a month at full fleet), so old months can be moved or archived whole and queries by
-- period touch one partition. Deduplication lives in ledger_event_ids because a unique key on a
-- partitioned table would have to include the partition key.
CREATE TABLE ledger_events (
    seq           bigint NOT NULL DEFAULT nextval('ledger_seq'),
    occurred_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL,
    stream_id     integer NOT NULL,
    stream_pos    bigint NOT NULL,
    src_offset    bigint,
    version       smallint NOT NULL,
    kind          text NOT NULL,
    tenant_id     text NOT NULL,
    event_id      uuid NOT NULL,
    hash          bytea NOT NULL,
    payload       jsonb NOT NULL,
    CHECK (octet_length(hash) = 32),
    CHECK (stream_pos >= 1)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX ledger_events_stream ON ledger_events (stream_id, stream_pos);

-- (tenant, event id) is the idempotency key: same content is a duplicate, other content a
-- conflict. The fingerprint is sha256 of the event's type and canonical payload.
CREATE TABLE ledger_event_ids (
    tenant_id   text COLLATE "C" NOT NULL,
    event_id    uuid NOT NULL,
    fingerprint bytea NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);

-- Which GPU was billed for which time. An interval is at most an hour long, so the intervals
-- that can overlap [lo, hi) all start in (lo - 1 hour, hi): one btree range scan per GPU. Writers
-- serialize per GPU bucket with transaction-scoped advisory locks (see store::append), so two
-- ingesters can never both bill the same GPU-second.
CREATE TABLE gpu_occupancy (
    gpu_id    uuid NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at   timestamptz NOT NULL,
    CHECK (ends_at > starts_at AND ends_at <= starts_at + interval '1 hour')
);
CREATE INDEX gpu_occupancy_gpu_start ON gpu_occupancy (gpu_id, starts_at);

-- Messages that were not ledgered, with their raw bytes and why. Nothing is ever lost.
CREATE TABLE quarantine (
    quarantine_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id     integer NOT NULL REFERENCES ledger_streams (stream_id),
    src_offset    bigint NOT NULL,
    recorded_at   timestamptz NOT NULL,
    reason        text NOT NULL,
    message       text NOT NULL,
    event_id      uuid,
    tenant_id     text,
    msg_key       bytea,
    raw           bytea NOT NULL,
    UNIQUE (stream_id, src_offset)
);

-- The first projection: GPU-seconds per tenant, SKU, project and hour, kept in the same
-- transaction as the append. It is the only table here whose rows change.
CREATE TABLE usage_hourly (
    tenant_id   text COLLATE "C" NOT NULL,
    gpu_sku     text COLLATE "C" NOT NULL,
    project     text COLLATE "C" NOT NULL,
    hour        timestamptz NOT NULL,
    gpu_seconds numeric(24, 6) NOT NULL CHECK (gpu_seconds >= 0 AND gpu_seconds < 'Infinity'),
    events      bigint NOT NULL,
    PRIMARY KEY (tenant_id, gpu_sku, project, hour)
);

-- The append-only tables refuse UPDATE, DELETE and TRUNCATE by trigger (for everyone) and by
-- privilege (the writer role only has SELECT and INSERT).
CREATE FUNCTION ledger_protect(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER refuse_update_delete BEFORE UPDATE OR DELETE ON %s
                    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()', tbl);
    EXECUTE format('CREATE TRIGGER refuse_truncate BEFORE TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()', tbl);
END
$$;

SELECT ledger_protect('ledger_events');
SELECT ledger_protect('ledger_event_ids');
SELECT ledger_protect('gpu_occupancy');
SELECT ledger_protect('quarantine');

-- Monthly partitions are made on demand, by the writer too (SECURITY DEFINER), each protected
-- like its parent. Serialized by an advisory lock so that concurrent ingesters do not race.
CREATE FUNCTION ledger_ensure_month(month_start date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    m date := date_trunc('month', month_start)::date;
    part text := format('ledger_events_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('gpuledger.ledger_ensure_month'));
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF ledger_events
                    FOR VALUES FROM (%L) TO (%L)', part,
                   (m::timestamp AT TIME ZONE 'UTC'), ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
    EXECUTE format('CREATE TRIGGER refuse_truncate BEFORE TRUNCATE ON %I
                    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()', part);
    EXECUTE format('GRANT SELECT, INSERT ON %I TO gpuledger_writer', part);
END
$$;

REVOKE ALL ON ledger_events, ledger_event_ids, gpu_occupancy, quarantine, ledger_streams, usage_hourly FROM PUBLIC;
GRANT SELECT, INSERT ON ledger_events, ledger_event_ids, gpu_occupancy, quarantine TO gpuledger_writer;
GRANT SELECT, INSERT, UPDATE ON ledger_streams, usage_hourly TO gpuledger_writer;
GRANT USAGE ON SEQUENCE ledger_seq TO gpuledger_writer;
REVOKE EXECUTE ON FUNCTION ledger_ensure_month(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_ensure_month(date) TO gpuledger_writer;
