-- gpuledger 0012: monthly partitions made safely by concurrent writers.
-- 0001's ledger_ensure_month checked with to_regclass() again after taking its advisory lock. That
-- reads the backend's catalog cache, which an advisory lock does not refresh (only relation locks
-- do): a writer that had looked before another created the month, then waited on the lock, still
-- saw no table, and its CREATE TABLE failed with "relation ... already exists" (hidden by the
-- caller's retry). Here both checks query pg_class itself, and the one made holding the lock has
-- a snapshot taken after the lock was granted (each statement of a VOLATILE PL/pgSQL function
-- takes a new one in READ COMMITTED), so it sees the other writer's committed partition.
CREATE OR REPLACE FUNCTION ledger_ensure_month(month_start date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    m date := date_trunc('month', month_start)::date;
    part text := format('ledger_events_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relname = part AND relnamespace = 'public'::regnamespace) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('gpuledger.ledger_ensure_month'));
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relname = part AND relnamespace = 'public'::regnamespace) THEN
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
