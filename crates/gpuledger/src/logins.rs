//! Which database login each command uses. Only `migrate` and `audit replay` (which builds a
//! scratch schema) use `GPULEDGER_DATABASE_URL`, the owner of the tables; every other command
//! uses an unprivileged login of migration 0011 or 0016, each from its own variable, else from
//! the owner's URL with only the user changed (no password: the development cluster trusts local
//! logins; production sets the variables):
//!
//!   ingest                          GPULEDGER_INGEST_DATABASE_URL   gpuledger_ingest
//!   serve                           GPULEDGER_API_DATABASE_URL      gpuledger_api
//!   serve (cross-tenant), reference,
//!   invoices, coverage, budget,
//!   audit checkpoint                GPULEDGER_FINANCE_DATABASE_URL  gpuledger_finance
//!   status, check, verify, report,
//!   audit verify, audit export      GPULEDGER_AUDITOR_DATABASE_URL  gpuledger_auditor (read-only)
//!   tokens                          GPULEDGER_TOKENS_DATABASE_URL   gpuledger_tokens
//!
//! Each of them refuses to start on a login that is privileged (`store::roles`).

use anyhow::{bail, Context, Result};
use store::StoreError;

/// A command's login role, the variable that names its URL, and the check that refuses a login
/// with more rights than the duty needs.
pub struct Duty {
    pub role: &'static str,
    pub variable: &'static str,
    pub refuse: fn(&mut postgres::Client) -> Result<(), StoreError>,
}

pub const INGEST: Duty = Duty {
    role: "gpuledger_ingest",
    variable: "GPULEDGER_INGEST_DATABASE_URL",
    refuse: store::roles::refuse_privileged,
};
pub const API: Duty =
    Duty { role: "gpuledger_api", variable: "GPULEDGER_API_DATABASE_URL", refuse: store::roles::refuse_privileged_api };
pub const FINANCE: Duty = Duty {
    role: "gpuledger_finance",
    variable: "GPULEDGER_FINANCE_DATABASE_URL",
    refuse: store::roles::refuse_privileged,
};
pub const AUDITOR: Duty = Duty {
    role: "gpuledger_auditor",
    variable: "GPULEDGER_AUDITOR_DATABASE_URL",
    refuse: store::roles::refuse_privileged_reader,
};
pub const TOKENS: Duty = Duty {
    role: "gpuledger_tokens",
    variable: "GPULEDGER_TOKENS_DATABASE_URL",
    refuse: store::roles::refuse_privileged,
};

/// A connection on the duty's login, refused (before any work) if the login is privileged.
pub fn connect(duty: &Duty, owner_url: &str) -> Result<postgres::Client> {
    let url = url(duty, owner_url)?;
    let mut db = store::connect(&url).with_context(|| format!("connecting to PostgreSQL as {}", duty.role))?;
    (duty.refuse)(&mut db)?;
    Ok(db)
}

/// The duty's URL: its variable when set, else the owner's URL with the duty's user.
pub fn url(duty: &Duty, owner_url: &str) -> Result<String> {
    match std::env::var(duty.variable) {
        Ok(u) if !u.is_empty() => Ok(u),
        _ => with_user(owner_url, duty.role)
            .with_context(|| format!("set {} (the login of {})", duty.variable, duty.role)),
    }
}

/// `postgres://[user[:password]@]host[:port][/db][?params]` with `user` in place of the user and
/// without the password (it was the owner's). Other forms, and URLs that name a user or password
/// in their parameters, are refused rather than guessed at.
fn with_user(owner_url: &str, user: &str) -> Result<String> {
    let Some((scheme, rest)) = owner_url.split_once("://").filter(|(s, _)| matches!(*s, "postgres" | "postgresql"))
    else {
        bail!("the database URL is not a postgres:// URL");
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.split_once('?').map(|(_, q)| q).unwrap_or("");
    if query.split('&').any(|kv| kv.starts_with("user=") || kv.starts_with("password=")) {
        bail!("the database URL names its user in its parameters");
    }
    let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    Ok(format!("{scheme}://{user}@{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::with_user;

    fn check(owner: &str, want: Option<&str>) {
        assert_eq!(with_user(owner, "gpuledger_api").ok().as_deref(), want, "{owner}");
    }

    #[test]
    fn the_duty_url_changes_only_the_user() {
        check(
            "postgres://gpuledger@127.0.0.1:55432/gpuledger",
            Some("postgres://gpuledger_api@127.0.0.1:55432/gpuledger"),
        );
        check(
            "postgresql://owner:s3cr@t@db.example:5432/books?sslmode=require",
            Some("postgresql://gpuledger_api@db.example:5432/books?sslmode=require"),
        );
        check("postgres://127.0.0.1/x", Some("postgres://gpuledger_api@127.0.0.1/x"));
        check("postgres://u@h?application_name=a", Some("postgres://gpuledger_api@h?application_name=a"));
        check("postgres://h/db?user=owner", None);
        check("host=127.0.0.1 user=gpuledger", None);
        check("mysql://u@h/db", None);
    }
}
