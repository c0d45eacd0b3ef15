//! Who a command logs in as. Only `gpuledger migrate` runs as the owner of the tables; every
//! other command that writes or serves runs as a role that can neither switch the append-only
//! triggers off nor read past the tenant wall (migration 0011). A command given a privileged
//! login refuses to start, instead of running with rights it must not have.

use crate::StoreError;
use postgres::Client;

/// Refuses a login role (the session's, whatever role it has set since) that is a superuser,
/// bypasses row-level security, may create roles, or owns the ledger (or is a member of its
/// owner): any of these can rewrite an issued document.
pub fn refuse_privileged(client: &mut Client) -> Result<(), StoreError> {
    let row = client.query_one(
        "SELECT session_user::text, r.rolsuper, r.rolbypassrls, r.rolcreaterole,
                coalesce((SELECT pg_has_role(session_user, c.relowner, 'MEMBER')
                            FROM pg_class c WHERE c.oid = to_regclass('public.ledger_events')), false)
           FROM pg_roles r WHERE r.rolname = session_user",
        &[],
    )?;
    let role: String = row.get(0);
    let why =
        [(1, "is a superuser"), (2, "bypasses row-level security"), (3, "may create roles"), (4, "owns the ledger")]
            .into_iter()
            .find(|(i, _)| row.get::<_, bool>(*i))
            .map(|(_, why)| why);
    match why {
        Some(why) => Err(StoreError::Privileged { role, why }),
        None => Ok(()),
    }
}

/// [`refuse_privileged`], and for the API's login also any read of the token tables (it learns
/// about one token at a time, through `api_token_lookup`).
pub fn refuse_privileged_api(client: &mut Client) -> Result<(), StoreError> {
    refuse_privileged(client)?;
    refuse_token_reader(client)
}

/// [`refuse_privileged_api`], and also any right to change a table of the schema: the login of
/// the read-only commands (`status`, `verify`, `audit verify`, ...).
pub fn refuse_privileged_reader(client: &mut Client) -> Result<(), StoreError> {
    refuse_privileged_api(client)?;
    let writes: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c
                             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
                               AND has_table_privilege(session_user, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))",
            &[],
        )?
        .get(0);
    if writes {
        let role: String = client.query_one("SELECT session_user::text", &[])?.get(0);
        return Err(StoreError::Privileged { role, why: "may change tables, and its commands only read" });
    }
    Ok(())
}

fn refuse_token_reader(client: &mut Client) -> Result<(), StoreError> {
    let reads: bool = client
        .query_one(
            "SELECT has_table_privilege(session_user, 'api_tokens', 'SELECT')
                 OR has_table_privilege(session_user, 'api_token_revocations', 'SELECT')",
            &[],
        )?
        .get(0);
    if reads {
        let role: String = client.query_one("SELECT session_user::text", &[])?.get(0);
        return Err(StoreError::Privileged { role, why: "reads the API tokens" });
    }
    Ok(())
}
