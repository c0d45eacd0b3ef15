-- gpuledger 0011: no superuser at run time. Only `gpuledger migrate` logs in as the owner of the
-- tables (the role that applies the migrations); every other command logs in as a role that is
-- not a superuser, cannot bypass row-level security, cannot create roles or databases and owns
-- nothing, so it cannot switch the append-only triggers off (session_replication_role needs a
-- superuser, ALTER TABLE ... DISABLE TRIGGER the owner) or become a role that could:
--
--   gpuledger_ingest   `gpuledger ingest`: a member of gpuledger_writer (append and read the ledger)
--   gpuledger_finance  reference and budget loads, closes, exports; the API's cross-tenant work
--                      (a member of gpuledger_writer: the loads and closes append to the ledger)
--   gpuledger_api      `gpuledger serve`: reads tenants' rows only behind the wall below; it
--                      logs in as itself, so RESET ROLE leaves it where it is
--
-- Roles are cluster-wide and created here without a password (the development cluster of
-- scripts/services.sh trusts local connections; in production the operator sets one with
-- ALTER ROLE ... PASSWORD, docs/operations.md "Database roles"). The owner that migrates needs
-- CREATEROLE (or to be a superuser, as in the development cluster).

-- Roles are shared by every database of the cluster, and test databases migrate in parallel: a
-- role is changed only when it differs from what it must be (changing an attribute such as
-- BYPASSRLS also needs a superuser, which a production owner need not be), and a change that
-- races another migration's ("tuple concurrently updated", a duplicate membership) is accepted
-- when the role is right afterwards.
CREATE FUNCTION pg_temp.gpuledger_login(r text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r AND (rolsuper OR rolbypassrls OR rolcreatedb OR rolcreaterole
               OR rolreplication OR NOT rolcanlogin OR NOT rolinherit)) THEN
        BEGIN
            EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT', r);
        EXCEPTION WHEN internal_error THEN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r AND (rolsuper OR rolbypassrls OR rolcreatedb
                       OR rolcreaterole OR rolreplication OR NOT rolcanlogin OR NOT rolinherit)) THEN
                RAISE;
            END IF;
        END;
    END IF;
END
$$;

CREATE FUNCTION pg_temp.gpuledger_member(member text, grp text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_has_role(member, grp, 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT %I TO %I', grp, member);
        EXCEPTION WHEN unique_violation OR duplicate_object OR internal_error THEN
            IF NOT pg_has_role(member, grp, 'MEMBER') THEN
                RAISE;
            END IF;
        END;
    END IF;
END
$$;

SELECT pg_temp.gpuledger_login('gpuledger_ingest'), pg_temp.gpuledger_login('gpuledger_finance'),
       pg_temp.gpuledger_login('gpuledger_api');
SELECT pg_temp.gpuledger_member('gpuledger_ingest', 'gpuledger_writer'),
       pg_temp.gpuledger_member('gpuledger_finance', 'gpuledger_writer');
DROP FUNCTION pg_temp.gpuledger_login(text), pg_temp.gpuledger_member(text, text);
DO $$
BEGIN
    -- A group, never a login: its members log in as themselves.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gpuledger_writer' AND (rolcanlogin OR rolsuper OR rolbypassrls
               OR rolcreatedb OR rolcreaterole OR rolreplication)) THEN
        ALTER ROLE gpuledger_writer NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
    END IF;
END
$$;

-- The API's role no longer reads the token tables. It asks for one token, by the SHA-256 of its
-- secret, and learns only that token's id, role, tenant, expiry and whether it was revoked.
REVOKE ALL ON api_tokens, api_token_revocations FROM gpuledger_api;

CREATE FUNCTION api_token_lookup(token_hash bytea)
RETURNS TABLE (token_id uuid, role text, tenant_id text, expires_at timestamptz, revoked boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.token_id, t.role, t.tenant_id::text, t.expires_at, r.token_id IS NOT NULL
      FROM api_tokens t LEFT JOIN api_token_revocations r USING (token_id)
     WHERE t.token_hash = api_token_lookup.token_hash
$$;

-- The tenant wall's scope was a setting (gpuledger.tenant, gpuledger.scope) that the session
-- could set itself. The scope is still a setting, gpuledger.wall, set for the transaction only,
-- but only api_open_wall can make one the wall accepts: it opens the wall only for a token that
-- is valid now, presented by the hash of its secret, and seals the scope with a key that only the
-- owner reads (a SHA-256 over the key, the backend, the transaction's start and the scope). The
-- wall recomputes the seal for every statement: a scope the session wrote itself, or copied from
-- an earlier transaction or another backend, admits nothing. Nothing is written to open a wall,
-- so a tenant's read stays a read-only transaction.
CREATE TABLE api_wall_key (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    key bytea NOT NULL CHECK (octet_length(key) = 32)
);
-- gen_random_uuid draws from the operating system's strong random source.
INSERT INTO api_wall_key (key)
    VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')));
REVOKE ALL ON api_wall_key FROM PUBLIC;

-- The seal of a scope ('t' and a tenant, or 'a' for all tenants) in this backend and transaction:
-- sha256(key || sha256(key || message)), nested so that no seal extends to another message.
-- Never granted to the API's role, which could otherwise seal any scope.
CREATE FUNCTION api_wall_seal(scope text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT encode(sha256(k.key || sha256(k.key || convert_to(format('%s:%s:%s', pg_backend_pid(),
                  (extract(epoch FROM now()) * 1000000)::bigint, scope), 'UTF8'))), 'hex')
      FROM api_wall_key k
$$;

CREATE FUNCTION api_open_wall(token_hash bytea) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    t record;
    scope text;
BEGIN
    SELECT l.role, l.tenant_id INTO t FROM api_token_lookup(token_hash) l
     WHERE NOT l.revoked AND l.expires_at > clock_timestamp();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'gpuledger: no valid token, the wall stays shut' USING ERRCODE = 'insufficient_privilege';
    END IF;
    scope := CASE WHEN t.role = 'tenant' THEN 't' || t.tenant_id ELSE 'a' END;
    PERFORM set_config('gpuledger.wall', api_wall_seal(scope) || ':' || scope, true);
END
$$;

-- The scope of this transaction's wall if its seal holds, else NULL (no wall: nothing admitted).
CREATE FUNCTION api_wall_scope() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    wall text := coalesce(current_setting('gpuledger.wall', true), '');
    seal text := split_part(wall, ':', 1);
    scope text := substr(wall, length(seal) + 2);
BEGIN
    IF seal = '' OR seal IS DISTINCT FROM api_wall_seal(scope) THEN
        RETURN NULL;
    END IF;
    RETURN scope;
END
$$;

-- What the wall admits in this transaction: one tenant, all of them, or (no wall) nothing.
CREATE FUNCTION api_wall_tenant() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT CASE WHEN s LIKE 't%' THEN substr(s, 2) END FROM api_wall_scope() s
$$;

CREATE FUNCTION api_wall_all() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce(s = 'a', false) FROM api_wall_scope() s
$$;

REVOKE EXECUTE ON FUNCTION api_token_lookup(bytea), api_wall_seal(text), api_open_wall(bytea), api_wall_scope(),
    api_wall_tenant(), api_wall_all() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_token_lookup(bytea), api_open_wall(bytea), api_wall_tenant(), api_wall_all() TO gpuledger_api;

-- Every tenant wall (those of 0003 and any added since) reads the scope from the wall, not from a
-- setting. The subqueries are evaluated once per statement, so an index on tenant_id still serves.
CREATE OR REPLACE FUNCTION ledger_tenant_policy(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP POLICY IF EXISTS api_tenant_wall ON %s', tbl);
    EXECUTE format($p$CREATE POLICY api_tenant_wall ON %s AS RESTRICTIVE TO gpuledger_api
                     USING (tenant_id = (SELECT api_wall_tenant()) OR (SELECT api_wall_all()))$p$, tbl);
END
$$;

CREATE OR REPLACE FUNCTION ledger_tenant_wall(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format('CREATE POLICY everyone ON %s USING (true) WITH CHECK (true)', tbl);
    PERFORM ledger_tenant_policy(tbl);
END
$$;

DO $$
DECLARE
    tbl regclass;
BEGIN
    FOR tbl IN SELECT polrelid::regclass FROM pg_policy WHERE polname = 'api_tenant_wall' LOOP
        PERFORM ledger_tenant_policy(tbl);
    END LOOP;
END
$$;

CREATE OR REPLACE VIEW api_ledger_events WITH (security_barrier) AS
    SELECT seq, occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id,
           event_id, hash, payload, gpu_id, interval_end, gpu_seconds, gpu_sku, node, project, job, labels, source
      FROM ledger_events
     WHERE tenant_id = (SELECT api_wall_tenant())
        OR (SELECT api_wall_all());

-- The API's readiness and /metrics read the ingest counters per stream (no tenant's rows).
GRANT SELECT ON ledger_streams TO gpuledger_api;

-- Issued documents are finance's: the ingester (the writer's other member) neither reads nor
-- appends invoices or closes.
REVOKE ALL ON billing_closes, invoices FROM gpuledger_writer;
GRANT SELECT, INSERT ON billing_closes, invoices TO gpuledger_finance;
