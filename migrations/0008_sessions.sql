-- 0008: what the API needs to tell a known tenant from an unknown one, to log every request it
-- refuses, and to keep short sign-in sessions for the web pages instead of the token itself.

-- A tenant is known when the ledger holds something of it: usage, an issued document, or
-- reference data (a billing profile, a contract, an adjustment). One rule for `tokens create`
-- and for the API's `?tenant=`. It reads across tenants as the owner (SECURITY DEFINER), and
-- answers only yes or no.
CREATE FUNCTION gpuledger_tenant_known(t text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT EXISTS (SELECT 1 FROM usage_hourly WHERE tenant_id = t)
        OR EXISTS (SELECT 1 FROM invoices WHERE tenant_id = t)
        OR EXISTS (SELECT 1 FROM ledger_events e JOIN ledger_streams s USING (stream_id)
                    WHERE s.topic = 'gpuledger.reference' AND e.tenant_id = t)
$$;
REVOKE ALL ON FUNCTION gpuledger_tenant_known(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gpuledger_tenant_known(text) TO gpuledger_api;

-- The access log records refusals too, also of requests without a valid token (no token id, no
-- role), and the concrete path with its query.
ALTER TABLE access_log ALTER COLUMN token_id DROP NOT NULL, ALTER COLUMN role DROP NOT NULL;

-- A browser's sign-in: a random id (stored only as its SHA-256) that stands for a token for a
-- few hours, until it expires, its token expires or is revoked, or the browser signs out.
CREATE TABLE ui_sessions (
    session_hash bytea PRIMARY KEY CHECK (octet_length(session_hash) = 32),
    token_id     uuid NOT NULL REFERENCES api_tokens (token_id),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);
REVOKE ALL ON ui_sessions FROM PUBLIC;

-- The API's login role reads neither the token tables nor the sessions (0011): it asks these
-- functions, which run as the owner and answer only for the secret's hash it holds. A session
-- answers as its token (with the earlier expiry, and ended when signed out) and gives the token's
-- hash, which is what opens the tenant wall (`api_open_wall`), so a session opens exactly the
-- wall its token would.
CREATE FUNCTION api_session_lookup(session_hash bytea)
RETURNS TABLE (token_id uuid, role text, tenant_id text, expires_at timestamptz, revoked boolean, token_hash bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.token_id, t.role, t.tenant_id, least(t.expires_at, s.expires_at),
           r.token_id IS NOT NULL OR s.ended_at IS NOT NULL, t.token_hash
      FROM ui_sessions s JOIN api_tokens t USING (token_id)
      LEFT JOIN api_token_revocations r USING (token_id)
     WHERE s.session_hash = $1
$$;

-- A new session for a valid token (by its hash), for at most `hours` and never past the token's
-- expiry; sessions that ended a day ago are deleted on the way. Returns false for a token that
-- is unknown, revoked or expired.
CREATE FUNCTION api_session_open(token_hash bytea, session_hash bytea, hours integer) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    DELETE FROM ui_sessions WHERE expires_at < now() - interval '1 day';
    INSERT INTO ui_sessions (session_hash, token_id, created_at, expires_at)
    SELECT $2, t.token_id, now(), least(now() + make_interval(hours => $3), t.expires_at)
      FROM api_tokens t
     WHERE t.token_hash = $1 AND t.expires_at > now()
       AND NOT EXISTS (SELECT 1 FROM api_token_revocations r WHERE r.token_id = t.token_id);
    RETURN FOUND;
END
$$;

-- Signing out: ends the session of this hash (an unknown or ended one is left as it is).
CREATE FUNCTION api_session_end(session_hash bytea) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE ui_sessions SET ended_at = now() WHERE ui_sessions.session_hash = $1 AND ended_at IS NULL
$$;

REVOKE ALL ON FUNCTION api_session_lookup(bytea), api_session_open(bytea, bytea, integer), api_session_end(bytea)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_session_lookup(bytea), api_session_open(bytea, bytea, integer), api_session_end(bytea)
    TO gpuledger_api;
