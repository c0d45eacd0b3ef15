-- gpuledger 0015: producer tokens for the HTTP ingest (POST /v1/events). A producer token may
-- post usage events of one CloudEvents source for the tenants it names, and nothing else: it
-- opens no tenant wall (it reads nothing) and signs in to no web page. Its scope is kept with
-- the token (append-only like the rest of the row), so changing it means a new token.

ALTER TABLE api_tokens
    ADD COLUMN source text COLLATE "C",
    ADD COLUMN tenants text[] COLLATE "C";

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('tenant', 'finance', 'auditor', 'admin', 'producer'));
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_producer_scope CHECK (
    (role = 'producer') = (source IS NOT NULL)
    AND (role = 'producer') = (tenants IS NOT NULL)
    AND (tenants IS NULL OR (cardinality(tenants) BETWEEN 1 AND 1000 AND array_position(tenants, NULL) IS NULL))
    AND (source IS NULL OR octet_length(source) BETWEEN 1 AND 256)
);

-- The lookup answers the producer's scope too (NULL for other roles). Its result type changes,
-- so it is dropped and created again; api_open_wall calls it by name and needs no change for that.
DROP FUNCTION api_token_lookup(bytea);
CREATE FUNCTION api_token_lookup(token_hash bytea)
RETURNS TABLE (token_id uuid, role text, tenant_id text, expires_at timestamptz, revoked boolean, source text,
               tenants text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.token_id, t.role, t.tenant_id::text, t.expires_at, r.token_id IS NOT NULL, t.source::text,
           t.tenants::text[]
      FROM api_tokens t LEFT JOIN api_token_revocations r USING (token_id)
     WHERE t.token_hash = api_token_lookup.token_hash
$$;
REVOKE EXECUTE ON FUNCTION api_token_lookup(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_token_lookup(bytea) TO gpuledger_api;

-- A producer token opens no wall: it reads no tenant's rows (before 0015 every role but
-- 'tenant' opened the wall to all tenants).
CREATE OR REPLACE FUNCTION api_open_wall(token_hash bytea) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    t record;
    scope text;
BEGIN
    SELECT l.role, l.tenant_id INTO t FROM api_token_lookup(token_hash) l
     WHERE NOT l.revoked AND l.expires_at > clock_timestamp() AND l.role <> 'producer';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'gpuledger: no valid token, the wall stays shut' USING ERRCODE = 'insufficient_privilege';
    END IF;
    scope := CASE WHEN t.role = 'tenant' THEN 't' || t.tenant_id ELSE 'a' END;
    PERFORM set_config('gpuledger.wall', api_wall_seal(scope) || ':' || scope, true);
END
$$;

-- Nor does it sign in to the web pages.
CREATE OR REPLACE FUNCTION api_session_open(token_hash bytea, session_hash bytea, hours integer) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    DELETE FROM ui_sessions WHERE expires_at < now() - interval '1 day';
    INSERT INTO ui_sessions (session_hash, token_id, created_at, expires_at)
    SELECT $2, t.token_id, now(), least(now() + make_interval(hours => $3), t.expires_at)
      FROM api_tokens t
     WHERE t.token_hash = $1 AND t.expires_at > now() AND t.role <> 'producer'
       AND NOT EXISTS (SELECT 1 FROM api_token_revocations r WHERE r.token_id = t.token_id);
    RETURN FOUND;
END
$$;
