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
