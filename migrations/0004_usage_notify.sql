-- gpuledger 0004: every committed change to usage_hourly is announced on channel
-- gpuledger_usage, so that the API's response cache (crates/api/src/cache.rs) drops exactly the
-- answers it makes stale. One notification per statement, whoever writes (the ingester's upsert,
-- usage adjustments, a rebuild): `tenant first_hour last_hour` items in Unix seconds, separated
-- by `;`, or `*` when the list would not fit a notification (or rows were removed).
-- PostgreSQL delivers notifications only when the transaction commits, and drops duplicates
-- within one transaction.

CREATE FUNCTION usage_hourly_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    msg text;
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        msg := '*';
    ELSE
        SELECT string_agg(format('%s %s %s', tenant_id, extract(epoch FROM lo)::bigint, extract(epoch FROM hi)::bigint), ';')
          INTO msg
          FROM (SELECT tenant_id, min(hour) AS lo, max(hour) AS hi FROM changed GROUP BY tenant_id) t;
        IF msg IS NULL THEN
            RETURN NULL;
        END IF;
        IF octet_length(msg) > 7000 THEN
            msg := '*';
        END IF;
    END IF;
    PERFORM pg_notify('gpuledger_usage', msg);
    RETURN NULL;
END
$$;

CREATE TRIGGER usage_hourly_notify_insert AFTER INSERT ON usage_hourly
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_notify();
CREATE TRIGGER usage_hourly_notify_update AFTER UPDATE ON usage_hourly
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_notify();
CREATE TRIGGER usage_hourly_notify_delete AFTER DELETE ON usage_hourly
    FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_notify();
CREATE TRIGGER usage_hourly_notify_truncate AFTER TRUNCATE ON usage_hourly
    FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_notify();
