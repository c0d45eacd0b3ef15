-- gpuledger: what only a PostgreSQL administrator (a superuser) may set up, once per cluster and
-- in every database that holds a ledger (and template1, which new databases copy). Run by
-- scripts/services.sh as the cluster's bootstrap superuser on every start (idempotent); in
-- production run it once as an administrator (docs/operations.md, "Database roles"):
--
--   psql -v owner=gpuledger -d template1 -f scripts/pg-bootstrap.sql
--   psql -v owner=gpuledger -d gpuledger -f scripts/pg-bootstrap.sql
--
-- 1. The owner of the tables (the login `gpuledger migrate` uses) is NOT a superuser and has no
--    CREATEROLE: on PostgreSQL 15 (Debian 12's) CREATEROLE may grant any role that is not a
--    superuser, itself included, so also pg_execute_server_program or pg_write_server_files, from
--    which a superuser is one step away (PostgreSQL 16 restricts CREATEROLE to roles it has ADMIN
--    OPTION on). It keeps CREATEDB (the tests and benchmarks make databases). The login roles of
--    migrations 0011 and 0016 are made here instead; the migrations then find them as they must be.
-- 2. An event trigger refuses every DDL command that would switch an append-only guard off: a
--    guard trigger disabled or made replica-only, renamed or dropped (also with its table or
--    function), or its function replaced or altered. The owner may still change the schema in
--    every other way (migrations add columns, tables, functions); a superuser's
--    session_replication_role is out of the owner's reach (only a superuser may set it).
\set ON_ERROR_STOP on

SELECT format('%I', :'owner') AS owner_ident \gset

-- Roles are shared by every database of the cluster: made (or narrowed) once, whichever database
-- this runs in.
DO $$
DECLARE
    r text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gpuledger_writer') THEN
        CREATE ROLE gpuledger_writer NOLOGIN;
    END IF;
    FOREACH r IN ARRAY ARRAY['gpuledger_ingest', 'gpuledger_finance', 'gpuledger_api', 'gpuledger_auditor',
                             'gpuledger_tokens'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
        EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT', r);
    END LOOP;
    ALTER ROLE gpuledger_writer NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
    IF NOT pg_has_role('gpuledger_ingest', 'gpuledger_writer', 'MEMBER') THEN
        GRANT gpuledger_writer TO gpuledger_ingest;
    END IF;
    IF NOT pg_has_role('gpuledger_finance', 'gpuledger_writer', 'MEMBER') THEN
        GRANT gpuledger_writer TO gpuledger_finance;
    END IF;
END
$$;

-- The owner: a login that owns the tables and may make databases, nothing more. A cluster made
-- by an earlier services.sh had it as a superuser: this narrows it (what it owns stays its own).
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') AS owner_missing \gset
\if :owner_missing
CREATE ROLE :owner_ident LOGIN;
\endif
ALTER ROLE :owner_ident LOGIN NOSUPERUSER NOCREATEROLE CREATEDB NOBYPASSRLS NOREPLICATION INHERIT;

-- The guard lives in a schema of the administrator's: the owner of the database (who owns the
-- schema public) can neither replace nor drop it.
CREATE SCHEMA IF NOT EXISTS gpuledger_guard AUTHORIZATION CURRENT_USER;
REVOKE ALL ON SCHEMA gpuledger_guard FROM PUBLIC;

-- The append-only guards: the triggers of migrations 0001, 0002, 0009 and 0012 on tables of the
-- schema public, known by their own name or by their function's (renaming one of the two is
-- refused while the other still names it).
CREATE OR REPLACE FUNCTION gpuledger_guard.guard_triggers()
RETURNS TABLE (trigger_oid oid, function_oid oid, enabled "char", what text)
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT t.oid, t.tgfoid, t.tgenabled, format('trigger %I on %s', t.tgname, t.tgrelid::regclass)
      FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid
      JOIN pg_proc p ON p.oid = t.tgfoid
     WHERE c.relnamespace = 'public'::regnamespace
       AND (t.tgname IN ('refuse_update_delete', 'refuse_truncate', 'invoices_gapless', 'invoices_match_event',
                         'billing_closes_match_event')
            OR (p.pronamespace = 'public'::regnamespace
                AND p.proname IN ('ledger_refuse_change', 'invoices_gapless', 'billing_invoice_guard',
                                  'billing_close_guard')))
$$;

CREATE OR REPLACE FUNCTION gpuledger_guard.refuse_guard_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    refused text;
BEGIN
    SELECT string_agg(g.what, ', ') INTO refused FROM gpuledger_guard.guard_triggers() g
     WHERE g.enabled NOT IN ('O', 'A');
    IF refused IS NULL THEN
        SELECT string_agg(DISTINCT g.what, ', ') INTO refused
          FROM pg_event_trigger_ddl_commands() c JOIN gpuledger_guard.guard_triggers() g
            ON (c.classid = 'pg_proc'::regclass AND c.objid = g.function_oid
                AND c.command_tag IN ('CREATE FUNCTION', 'CREATE PROCEDURE', 'ALTER FUNCTION', 'ALTER ROUTINE'))
            OR (c.classid = 'pg_trigger'::regclass AND c.objid = g.trigger_oid AND c.command_tag = 'ALTER TRIGGER');
    END IF;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION 'gpuledger: % would switch an append-only guard off (%), which no login may do',
            tg_tag, refused
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'the guards are changed only by an administrator, after dropping the event trigger gpuledger_guard_ddl';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION gpuledger_guard.refuse_guard_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    refused text;
BEGIN
    SELECT string_agg(o.object_identity, ', ') INTO refused FROM pg_event_trigger_dropped_objects() o
     WHERE o.object_type = 'trigger' AND o.address_names[1] = 'public'
       AND o.address_names[3] IN ('refuse_update_delete', 'refuse_truncate', 'invoices_gapless',
                                  'invoices_match_event', 'billing_closes_match_event');
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION 'gpuledger: % would drop the append-only guard %, which no login may do', tg_tag, refused
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

-- The event trigger functions run as the administrator (SECURITY DEFINER), so that whoever runs
-- the DDL needs no right in this schema; they take no input and cannot be called directly.
REVOKE ALL ON FUNCTION gpuledger_guard.guard_triggers(), gpuledger_guard.refuse_guard_ddl(),
    gpuledger_guard.refuse_guard_drop() FROM PUBLIC;

SELECT NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'gpuledger_guard_ddl') AS ddl_missing,
       NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'gpuledger_guard_drop') AS drop_missing \gset
\if :ddl_missing
CREATE EVENT TRIGGER gpuledger_guard_ddl ON ddl_command_end EXECUTE FUNCTION gpuledger_guard.refuse_guard_ddl();
\endif
\if :drop_missing
CREATE EVENT TRIGGER gpuledger_guard_drop ON sql_drop EXECUTE FUNCTION gpuledger_guard.refuse_guard_drop();
\endif
-- Also under session_replication_role = replica.
ALTER EVENT TRIGGER gpuledger_guard_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER gpuledger_guard_drop ENABLE ALWAYS;
