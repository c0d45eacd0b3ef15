-- The dcgm collector (`gpuledger collect dcgm`, issue 15): its durable cursor, the events it
-- derived and has not yet seen acknowledged by Kafka, and the coverage of every closed run.

-- One row per collector source: the meter's state (each device's last observation and the
-- pieces of minutes not closed yet), as JSON written by domain::meter::timeline::MeterState.
CREATE TABLE collector_cursors (
    source      text PRIMARY KEY,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Events written in the same transaction as the cursor that produced them; produced to Kafka
-- and deleted once acknowledged. A restarted collector produces what is left first.
CREATE TABLE collector_outbox (
    source      text NOT NULL,
    event_id    uuid NOT NULL,
    kafka_key   text NOT NULL,
    payload     bytea NOT NULL,
    PRIMARY KEY (source, event_id)
);

-- Every closed run of a device: billed, idle, unmetered (a gap longer than the bridge limit),
-- unmapped (a namespace mapped to no tenant) or unbillable (no SKU for the model, or a name the
-- event cannot carry). The basis of the coverage report.
CREATE TABLE collector_coverage (
    source          text NOT NULL,
    device          text NOT NULL,
    interval_start  timestamptz NOT NULL,
    interval_end    timestamptz NOT NULL,
    class           text NOT NULL CHECK (class IN ('billed', 'idle', 'unmetered', 'unmapped', 'unbillable')),
    gpu_sku         text,
    model_name      text NOT NULL,
    node            text NOT NULL,
    namespace       text,
    tenant_id       text,
    gpu_seconds     numeric NOT NULL CHECK (gpu_seconds > 0),
    energy_wh       numeric CHECK (energy_wh >= 0),
    event_id        uuid,
    PRIMARY KEY (source, device, interval_start)
);
CREATE INDEX collector_coverage_day ON collector_coverage (interval_start);

-- The collector logs in as gpuledger_ingest (a member of gpuledger_writer).
GRANT SELECT, INSERT, UPDATE ON collector_cursors TO gpuledger_writer;
GRANT SELECT, INSERT, DELETE ON collector_outbox TO gpuledger_writer;
GRANT SELECT, INSERT ON collector_coverage TO gpuledger_writer;
