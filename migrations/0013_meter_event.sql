-- gpuledger 0013: the usage event v1 grows, compatibly (issue 15, section 3). Three optional
-- members of `data` get typed columns on usage rows: `mig_instance` with `mig_profile` (a MIG
-- slice of the parent GPU `gpu_id`) and `energy_wh` (exact watt-hours). Rows without them keep
-- NULL, and their canonical payload bytes — the hash chain's input — are exactly what they were
-- (domain::usage::UsageRecorded::write_payload writes a member only when it is present).
--
-- Adding nullable columns without a default changes no stored row. The new CHECK is validated
-- over every partition once, here (a sequential read of the ledger).

ALTER TABLE ledger_events
    ADD COLUMN mig_instance smallint,
    ADD COLUMN mig_profile text,
    ADD COLUMN energy_wh numeric;

-- Instance and profile together or not at all, only on typed usage rows (a jsonb payload row
-- keeps its content in the payload), instance 0..99, energy non-negative and finite.
ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_mig_energy CHECK (
    (mig_instance IS NULL) = (mig_profile IS NULL)
    AND (payload IS NULL OR num_nonnulls(mig_instance, mig_profile, energy_wh) = 0)
    AND (mig_instance IS NULL OR mig_instance BETWEEN 0 AND 99)
    AND (energy_wh IS NULL OR (energy_wh >= 0 AND energy_wh < 'Infinity'))
);

-- The API's walled view of the log shows the new columns too (as 0011 defined it, plus them;
-- CREATE OR REPLACE keeps its grants).
CREATE OR REPLACE VIEW api_ledger_events WITH (security_barrier) AS
    SELECT seq, occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id,
           event_id, hash, payload, gpu_id, interval_end, gpu_seconds, gpu_sku, node, project, job, labels, source,
           mig_instance, mig_profile, energy_wh
      FROM ledger_events
     WHERE tenant_id = (SELECT api_wall_tenant())
        OR (SELECT api_wall_all());
