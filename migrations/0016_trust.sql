-- gpuledger 0016: the operator's commands get logins of their own, so that only `migrate` (and
-- `audit replay`, which builds a scratch schema) still needs the owner of the tables:
--
--   gpuledger_auditor  `status`, `check`, `verify`, `report`, `audit verify`, `audit export`:
--                      reads the ledger, the projection and the issued documents; writes nothing,
--                      reads no token, session, access log or wall key
--   gpuledger_tokens   `tokens create|revoke`: reads and appends the token tables, asks whether a
--                      tenant is known (gpuledger_tenant_known); reads nothing else
--
-- (`audit checkpoint` appends a checkpoint to the ledger's local stream: it runs as
-- gpuledger_finance, a member of the writer group.) Like those of 0011 they are logins without a
-- password that are no superuser, bypass no row-level security, create no role or database and
-- own nothing. In the development cluster scripts/pg-bootstrap.sql creates them (the owner has no
-- CREATEROLE there); an owner that may create roles creates them here.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['gpuledger_auditor', 'gpuledger_tokens'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN', r);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN NULL;
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'gpuledger: the login % is missing and % may not create roles', r, current_user
                        USING HINT = 'run scripts/pg-bootstrap.sql as an administrator (docs/operations.md, "Database roles")';
            END;
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r AND (rolsuper OR rolbypassrls OR rolcreatedb OR rolcreaterole
                   OR rolreplication OR NOT rolcanlogin)) THEN
            EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION', r);
        END IF;
    END LOOP;
END
$$;

-- The auditor reads what the reports, `verify` and the audit export read. Behind the tenant wall
-- tables (FORCE ROW LEVEL SECURITY) its permissive policy `everyone` admits every row, as for
-- the owner; the wall's restrictive policy applies to gpuledger_api only.
GRANT SELECT ON ledger_events, ledger_event_ids, gpu_occupancy, quarantine, ledger_streams, ledger_commit_clock,
    usage_hourly, billing_closes, invoices, schema_migrations TO gpuledger_auditor;
DO $$
DECLARE
    part regclass;
BEGIN
    -- Partitions made before this migration; ledger_ensure_month grants the later ones.
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'ledger_events'::regclass LOOP
        EXECUTE format('GRANT SELECT ON %s TO gpuledger_auditor', part);
    END LOOP;
END
$$;

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
    EXECUTE format('GRANT SELECT ON %I TO gpuledger_auditor', part);
END
$$;

-- The token login: issue and revoke, nothing else.
GRANT SELECT, INSERT ON api_tokens, api_token_revocations TO gpuledger_tokens;
GRANT EXECUTE ON FUNCTION gpuledger_tenant_known(text) TO gpuledger_tokens;
