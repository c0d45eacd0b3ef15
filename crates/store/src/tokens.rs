//! API tokens: random, shown once, stored only as their SHA-256; with a role, the tenant they
//! belong to (tenant role) or the source and tenants they may report usage for (producer role,
//! migration 0015), an expiry; revoked by an appended revocation.

use crate::{Refusal, StoreError};
use chrono::{DateTime, Duration, Utc};
use postgres::Client;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const ROLES: &[&str] = &["tenant", "finance", "auditor", "admin", "producer"];
/// Most tenants one producer token may report for (migration 0015 checks it too).
pub const PRODUCER_TENANTS_MAX: usize = 1000;
/// Longest CloudEvents `source` a producer token may name (the event's own limit).
pub const PRODUCER_SOURCE_MAX: usize = 256;
pub const TOKEN_PREFIX: &str = "glt_";

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new token: its id and the secret (shown once; only the hash is stored).
pub fn create_token(
    client: &mut Client,
    role: &str,
    tenant_id: Option<&str>,
    label: &str,
    valid_for: Duration,
    now: DateTime<Utc>,
) -> Result<(Uuid, String), StoreError> {
    if !ROLES.contains(&role) {
        return Err(Refusal::UnknownRole(role.to_string()).into());
    }
    if role == "producer" {
        return Err(Refusal::ProducerScope("a producer token names its source and tenants (--source, --tenant)").into());
    }
    if (role == "tenant") != tenant_id.is_some() {
        return Err(Refusal::TokenTenant.into());
    }
    if let Some(t) = tenant_id {
        if !domain::usage::is_valid_tenant_id(t) {
            return Err(Refusal::TenantId(t.to_string()).into());
        }
        if !tenant_known(client, t)? {
            return Err(Refusal::UnknownTenant(t.to_string()).into());
        }
    }
    let (id, token) = new_secret();
    client.execute(
        "INSERT INTO api_tokens (token_id, token_hash, role, tenant_id, label, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&id, &hash_token(&token), &role, &tenant_id, &label, &now, &(now + valid_for)],
    )?;
    Ok((id, token))
}

/// A new producer token: it may post usage events (`POST /v1/events`) whose CloudEvents `source`
/// is `source` and whose tenant is one of `tenants`, and nothing else. The tenants need not be
/// known to the ledger yet (a producer reports a new tenant's first usage), only valid ids.
pub fn create_producer_token(
    client: &mut Client,
    source: &str,
    tenants: &[String],
    label: &str,
    valid_for: Duration,
    now: DateTime<Utc>,
) -> Result<(Uuid, String), StoreError> {
    if source.is_empty() || source.len() > PRODUCER_SOURCE_MAX || source.chars().any(char::is_control) {
        return Err(Refusal::ProducerScope("--source must be a non-empty URI-reference of at most 256 bytes").into());
    }
    if tenants.is_empty() || tenants.len() > PRODUCER_TENANTS_MAX {
        return Err(Refusal::ProducerScope("a producer token names 1 to 1000 tenants (--tenant, repeated)").into());
    }
    if let Some(bad) = tenants.iter().find(|t| !domain::usage::is_valid_tenant_id(t)) {
        return Err(Refusal::TenantId(bad.clone()).into());
    }
    let mut tenants = tenants.to_vec();
    tenants.sort();
    tenants.dedup();
    let (id, token) = new_secret();
    client.execute(
        "INSERT INTO api_tokens (token_id, token_hash, role, label, created_at, expires_at, source, tenants)
         VALUES ($1, $2, 'producer', $3, $4, $5, $6, $7)",
        &[&id, &hash_token(&token), &label, &now, &(now + valid_for), &source, &tenants],
    )?;
    Ok((id, token))
}

/// A token's id and its secret (32 random bytes from the operating system, hex).
fn new_secret() -> (Uuid, String) {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    (Uuid::new_v4(), format!("{TOKEN_PREFIX}{}", hex::encode(secret)))
}

/// Whether the ledger knows the tenant (migration 0008's `gpuledger_tenant_known`: usage, an
/// issued document or reference data of it).
pub fn tenant_known(client: &mut Client, tenant: &str) -> Result<bool, StoreError> {
    Ok(client.query_one("SELECT gpuledger_tenant_known($1)", &[&tenant])?.get(0))
}

pub fn revoke_token(client: &mut Client, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    let n = client.execute(
        "INSERT INTO api_token_revocations (token_id, revoked_at, reason)
         SELECT token_id, $2, $3 FROM api_tokens WHERE token_id = $1 ON CONFLICT (token_id) DO NOTHING",
        &[&id, &now, &reason],
    )?;
    if n == 0 {
        let exists = client.query_opt("SELECT 1 FROM api_tokens WHERE token_id = $1", &[&id])?.is_some();
        if !exists {
            return Err(Refusal::NoToken(id).into());
        }
    }
    Ok(())
}
