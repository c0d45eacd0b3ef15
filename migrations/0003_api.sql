-- gpuledger 0003: the HTTP API's walls. API tokens (only their hashes), revocations and the
-- access log are append-only; the API runs as gpuledger_api, a non-owner role without BYPASSRLS,
-- and row-level security (FORCE, so the owner is subject too) keeps each tenant to its own rows
-- of usage_hourly and invoices; ledger_events is reached only through a walled view.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gpuledger_api') THEN
        CREATE ROLE gpuledger_api NOLOGIN NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

CREATE TABLE api_tokens (
    token_id    uuid PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    role        text NOT NULL CHECK (role IN ('tenant', 'finance', 'auditor', 'admin')),
    tenant_id   text COLLATE "C",
    label       text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    CHECK ((role = 'tenant') = (tenant_id IS NOT NULL))
);

CREATE TABLE api_token_revocations (
    token_id    uuid PRIMARY KEY REFERENCES api_tokens (token_id),
    revoked_at  timestamptz NOT NULL,
    reason      text NOT NULL
);

-- Every finance and auditor read (and every refused request with a valid token).
CREATE TABLE access_log (
    access_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    token_id    uuid NOT NULL,
    role        text NOT NULL,
    tenant_id   text,
    method      text NOT NULL,
    path        text NOT NULL,
    status      smallint NOT NULL
);

SELECT ledger_protect('api_tokens');
SELECT ledger_protect('api_token_revocations');
SELECT ledger_protect('access_log');

-- The tenant wall: for gpuledger_api, rows of the tenant set for the transaction
-- (gpuledger.tenant), or all rows when the transaction's scope is 'all' (finance, auditor).
-- A permissive policy keeps every other role (the owner, the writer) as before.
CREATE FUNCTION ledger_tenant_wall(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format('CREATE POLICY everyone ON %s USING (true) WITH CHECK (true)', tbl);
    EXECUTE format($p$CREATE POLICY api_tenant_wall ON %s AS RESTRICTIVE TO gpuledger_api
                     USING (tenant_id = current_setting('gpuledger.tenant', true)
                            OR current_setting('gpuledger.scope', true) = 'all')$p$, tbl);
END
$$;

SELECT ledger_tenant_wall('usage_hourly');
SELECT ledger_tenant_wall('invoices');

-- ledger_events takes the ingester's COPY, which PostgreSQL refuses on tables with row-level
-- security; the API role gets no privilege on it, only this view, which applies the same wall
-- (a view runs with its owner's rights; security_barrier keeps the filter first).
CREATE VIEW api_ledger_events WITH (security_barrier) AS
    SELECT seq, occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id,
           event_id, hash, payload
      FROM ledger_events
     WHERE tenant_id = current_setting('gpuledger.tenant', true)
        OR current_setting('gpuledger.scope', true) = 'all';

REVOKE ALL ON api_tokens, api_token_revocations, access_log, api_ledger_events FROM PUBLIC;
GRANT SELECT ON usage_hourly, invoices, api_ledger_events, billing_closes, api_tokens, api_token_revocations TO gpuledger_api;
GRANT INSERT ON access_log TO gpuledger_api;
