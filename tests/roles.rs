//! Database roles, prevention rather than detection (migration 0011): the services log in as
//! roles that are not superusers, bypass no row-level security and own nothing; each escalation
//! that was open to the API's session (reset to a superuser, widen the tenant scope with a
//! setting, read the token table, switch the append-only triggers off) is tried on the real
//! PostgreSQL and refused; and each command refuses to start on a privileged login.

use chrono::{Duration, Utc};
use integration::{bin, brokers, connect, fresh_db, http, login_url, serial, serve_api, superuser_url};
use postgres::Client;
use std::process::Command;

/// Runs `sql` as the session `c` and expects PostgreSQL to refuse it (any error); `what` says
/// which escalation it is. Each attempt runs in its own transaction, rolled back.
fn refused(c: &mut Client, what: &str, sql: &str) {
    let mut tx = c.transaction().unwrap();
    let r = tx.batch_execute(sql);
    assert!(r.is_err(), "{what}: `{sql}` was allowed");
    tx.rollback().unwrap();
}

/// The tenants whose usage the session `c` sees after `setup` ran in the same transaction.
fn visible(c: &mut Client, setup: &str, table: &str) -> Vec<String> {
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(setup).unwrap();
    let rows = tx.query(&format!("SELECT DISTINCT tenant_id FROM {table} ORDER BY 1"), &[]).unwrap();
    tx.rollback().unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

fn hash_hex(token: &str) -> String {
    store::tokens::hash_token(token).iter().map(|b| format!("{b:02x}")).collect()
}

/// A database with usage of two tenants, in the projection and in the ledger.
fn two_tenants(name: &str) -> String {
    let db = fresh_db(name).unwrap();
    let mut c = connect(&db);
    c.batch_execute(
        "INSERT INTO usage_hourly VALUES ('tenant-a', 'nvidia-h200', 'p', '2026-08-01T00:00:00Z', 1, 1),
                                         ('tenant-b', 'nvidia-h200', 'p', '2026-08-01T00:00:00Z', 2, 1);
         SELECT ledger_ensure_month('2026-08-01');
         INSERT INTO ledger_events (occurred_at, recorded_at, stream_id, stream_pos, version, kind, tenant_id, event_id, hash, payload)
         SELECT '2026-08-01T00:00:00Z', now(), 1, n, 1, 'usage.adjusted', t, gen_random_uuid(), sha256(t::bytea), '{}'
           FROM (VALUES (1, 'tenant-a'), (2, 'tenant-b')) v(n, t)",
    )
    .unwrap();
    db
}

#[test]
fn the_api_session_cannot_widen_its_rights() {
    let _serial = serial();
    let db = two_tenants("roles_api");
    let mut owner = connect(&db);
    let tenant = |role: &str, tenant: Option<&str>, days: i64| {
        let (_, t) =
            store::tokens::create_token(&mut connect(&db), role, tenant, "t", Duration::days(days), Utc::now())
                .unwrap();
        hash_hex(&t)
    };
    let (a, finance) = (tenant("tenant", Some("tenant-a"), 1), tenant("finance", None, 1));
    let (revoked_id, revoked) =
        store::tokens::create_token(&mut owner, "tenant", Some("tenant-b"), "t", Duration::days(1), Utc::now())
            .unwrap();
    store::tokens::revoke_token(&mut owner, revoked_id, "test", Utc::now()).unwrap();
    let expired = {
        let (_, t) = store::tokens::create_token(
            &mut owner,
            "tenant",
            Some("tenant-b"),
            "t",
            Duration::days(1),
            Utc::now() - Duration::days(2),
        )
        .unwrap();
        hash_hex(&t)
    };

    let mut api = connect(&login_url(&db, "gpuledger_api"));
    // RESET ROLE gives back the login, and the login is nobody special.
    api.batch_execute("RESET ROLE").unwrap();
    let r =
        api.query_one("SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user", &[]).unwrap();
    let (who, sup): (String, bool) = (r.get(0), r.get(1));
    assert_eq!((who.as_str(), sup), ("gpuledger_api", false));
    for role in
        ["gpuledger", "postgres", "gpuledger_writer", "gpuledger_finance", "gpuledger_ingest", "pg_read_all_data"]
    {
        refused(&mut api, "becoming another role", &format!("SET ROLE {role}"));
    }
    refused(&mut api, "switching the triggers off", "SET session_replication_role = replica");
    refused(&mut api, "switching the triggers off", "ALTER TABLE invoices DISABLE TRIGGER USER");
    refused(&mut api, "rewriting an invoice", "UPDATE invoices SET net_total = 0");
    refused(&mut api, "changing usage", "UPDATE usage_hourly SET events = 0");
    refused(&mut api, "reading the tokens", "SELECT * FROM api_tokens");
    refused(&mut api, "reading the revocations", "SELECT * FROM api_token_revocations");
    refused(&mut api, "minting a token", "INSERT INTO api_tokens VALUES (gen_random_uuid(), sha256('x'), 'admin', NULL, 'x', now(), now() + interval '1 day')");
    refused(&mut api, "reading the ledger past its view", "SELECT * FROM ledger_events");
    refused(&mut api, "reading the access log", "SELECT * FROM access_log");
    refused(&mut api, "creating objects", "CREATE TABLE public.x (a int)");
    refused(
        &mut api,
        "replacing the wall",
        "CREATE OR REPLACE FUNCTION api_wall_all() RETURNS boolean LANGUAGE sql AS 'SELECT true'",
    );
    for (what, key) in [
        ("an unknown token", hash_hex("glt_nothing")),
        ("a revoked token", hash_hex(&revoked)),
        ("an expired token", expired),
    ] {
        refused(&mut api, &format!("opening the wall with {what}"), &format!("SELECT api_open_wall('\\x{key}')"));
    }

    // The tenant scope: settings open nothing, the wall is not writable, a look-alike is no wall.
    let open = |key: &str| format!("SELECT api_open_wall('\\x{key}');");
    let widen = "SET LOCAL gpuledger.tenant = 'tenant-b'; SET LOCAL gpuledger.scope = 'all';";
    for table in ["usage_hourly", "api_ledger_events"] {
        assert_eq!(visible(&mut api, "", table), Vec::<String>::new(), "{table}: no wall, no rows");
        assert_eq!(visible(&mut api, widen, table), Vec::<String>::new(), "{table}: settings open no wall");
        assert_eq!(visible(&mut api, &open(&a), table), ["tenant-a"], "{table}");
        assert_eq!(
            visible(&mut api, &format!("{}{widen}", open(&a)), table),
            ["tenant-a"],
            "{table}: a setting widens nothing"
        );
        assert_eq!(visible(&mut api, &open(&finance), table), ["tenant-a", "tenant-b"], "{table}: finance sees all");
    }
    // RESET ROLE inside a walled transaction gives back the login, still behind the same wall.
    for table in ["usage_hourly", "api_ledger_events"] {
        let reset = format!("{}RESET ROLE; SET SESSION AUTHORIZATION DEFAULT;", open(&a));
        assert_eq!(visible(&mut api, &reset, table), ["tenant-a"], "{table} after RESET ROLE");
    }
    refused(&mut api, "becoming the owner", "SET SESSION AUTHORIZATION gpuledger");
    refused(&mut api, "reading the wall's key", "SELECT * FROM api_wall_key");
    refused(&mut api, "sealing a scope", "SELECT api_wall_seal('a')");
    // A sealed scope is good for its own transaction only; edited, it admits nothing.
    let sealed = |c: &mut Client, key: &str| -> String {
        let mut tx = c.transaction().unwrap();
        tx.batch_execute(&open(key)).unwrap();
        let wall = tx.query_one("SELECT current_setting('gpuledger.wall')", &[]).unwrap().get(0);
        tx.rollback().unwrap();
        wall
    };
    let (wall_a, wall_all) = (sealed(&mut api, &a), sealed(&mut api, &finance));
    let set = |wall: &str| format!("SET LOCAL gpuledger.wall = '{wall}';");
    assert_eq!(visible(&mut api, &set(&wall_all), "usage_hourly"), Vec::<String>::new(), "a replayed scope");
    let forged = wall_a.replace(":ttenant-a", ":ttenant-b");
    assert_eq!(
        visible(&mut api, &format!("{}{}", open(&a), set(&forged)), "usage_hourly"),
        Vec::<String>::new(),
        "an edited scope"
    );
    let forged = format!("{}:a", wall_a.split(':').next().unwrap());
    assert_eq!(
        visible(&mut api, &format!("{}{}", open(&a), set(&forged)), "usage_hourly"),
        Vec::<String>::new(),
        "an edited scope"
    );
}

/// The tables nothing may change or empty, whoever asks (partitions included, one is made by
/// [`two_tenants`]).
const APPEND_ONLY: [&str; 10] = [
    "ledger_events",
    "ledger_events_y2026m08",
    "ledger_event_ids",
    "gpu_occupancy",
    "quarantine",
    "billing_closes",
    "invoices",
    "api_tokens",
    "api_token_revocations",
    "access_log",
];

fn first_column(db: &str, table: &str) -> String {
    connect(db)
        .query_one(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum = 1",
            &[&table],
        )
        .unwrap()
        .get(0)
}

#[test]
fn every_service_login_is_unprivileged_and_owns_nothing() {
    let _serial = serial();
    let db = two_tenants("roles_logins");
    for role in LOGINS {
        let mut c = connect(&login_url(&db, role));
        let r = c
            .query_one(
                "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication,
                        pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = 'ledger_events'::regclass), 'MEMBER')
                   FROM pg_roles WHERE rolname = session_user",
                &[],
            )
            .unwrap();
        let flags: Vec<bool> = (0..6).map(|i| r.get(i)).collect();
        assert_eq!(flags, [false; 6], "{role}: superuser, bypassrls, createrole, createdb, replication, owner");
        store::roles::refuse_privileged(&mut c).unwrap();
        // The ingester sets the writer's role; resetting it gives back only the login.
        if role == "gpuledger_ingest" || role == "gpuledger_finance" {
            c.batch_execute("SET ROLE gpuledger_writer").unwrap();
        }
        c.batch_execute("RESET ROLE").unwrap();
        let who: String = c.query_one("SELECT current_user::text", &[]).unwrap().get(0);
        assert_eq!(who, role);
        refused(&mut c, role, "SET session_replication_role = replica");
        refused(&mut c, role, "SET LOCAL session_replication_role = replica");
        for table in APPEND_ONLY {
            refused(&mut c, role, &format!("ALTER TABLE {table} DISABLE TRIGGER USER"));
            refused(&mut c, role, &format!("ALTER TABLE {table} DISABLE TRIGGER ALL"));
            refused(&mut c, role, &format!("UPDATE {table} SET {} = {0}", first_column(&db, table)));
            refused(&mut c, role, &format!("DELETE FROM {table}"));
            refused(&mut c, role, &format!("TRUNCATE {table}"));
        }
        if role != "gpuledger_tokens" {
            refused(&mut c, role, "SELECT * FROM api_tokens");
            refused(&mut c, role, "SELECT * FROM api_token_revocations");
        }
        refused(&mut c, role, "SELECT * FROM api_wall_key");
        refused(&mut c, role, "SET ROLE gpuledger");
        refused(&mut c, role, "CREATE ROLE x SUPERUSER");
        refused(&mut c, role, "GRANT gpuledger TO current_user");
    }
    // The owner is what the checks exist to refuse.
    let e = store::roles::refuse_privileged(&mut connect(&db)).unwrap_err();
    assert!(e.to_string().contains("owns the ledger"), "{e}");
}

/// Every login of migrations 0011 and 0016.
const LOGINS: [&str; 5] =
    ["gpuledger_ingest", "gpuledger_finance", "gpuledger_api", "gpuledger_auditor", "gpuledger_tokens"];

/// The owner of the tables (the login `migrate` uses) owns them and may change the schema, but is
/// no superuser, may not create roles (on PostgreSQL 15 CREATEROLE grants any role, such as
/// pg_execute_server_program), and the administrator's event trigger (scripts/pg-bootstrap.sql)
/// refuses every way the owner had to switch an append-only guard off.
#[test]
fn the_owner_owns_the_tables_but_cannot_switch_the_append_only_guards_off() {
    let _serial = serial();
    let db = two_tenants("roles_owner");
    let mut owner = connect(&db);
    let r = owner
        .query_one(
            "SELECT rolsuper, rolcreaterole, rolbypassrls, rolreplication,
                    pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = 'ledger_events'::regclass), 'MEMBER')
               FROM pg_roles WHERE rolname = session_user",
            &[],
        )
        .unwrap();
    let flags: Vec<bool> = (0..5).map(|i| r.get(i)).collect();
    assert_eq!(flags, [false, false, false, false, true], "superuser, createrole, bypassrls, replication, owner");
    let o = "the owner";
    refused(&mut owner, o, "SET session_replication_role = replica");
    refused(&mut owner, o, "SET LOCAL session_replication_role = replica");
    for table in APPEND_ONLY {
        refused(&mut owner, o, &format!("ALTER TABLE {table} DISABLE TRIGGER USER"));
        refused(&mut owner, o, &format!("ALTER TABLE {table} DISABLE TRIGGER ALL"));
        refused(&mut owner, o, &format!("ALTER TABLE {table} DISABLE TRIGGER refuse_update_delete"));
        refused(&mut owner, o, &format!("ALTER TABLE {table} ENABLE REPLICA TRIGGER refuse_truncate"));
        refused(&mut owner, o, &format!("DROP TRIGGER refuse_truncate ON {table}"));
        refused(&mut owner, o, &format!("ALTER TRIGGER refuse_truncate ON {table} RENAME TO kept"));
        refused(&mut owner, o, &format!("DROP TABLE {table} CASCADE"));
        refused(&mut owner, o, &format!("TRUNCATE {table}"));
        // The row guards fire per row: tried where there are rows.
        let rows: bool = owner.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[]).unwrap().get(0);
        if rows {
            refused(&mut owner, o, &format!("UPDATE {table} SET {} = {0}", first_column(&db, table)));
            refused(&mut owner, o, &format!("DELETE FROM {table}"));
        }
    }
    for (table, trigger) in [("invoices", "invoices_gapless"), ("invoices", "invoices_match_event")] {
        refused(&mut owner, o, &format!("ALTER TABLE {table} DISABLE TRIGGER {trigger}"));
        refused(&mut owner, o, &format!("DROP TRIGGER {trigger} ON {table}"));
    }
    for function in ["ledger_refuse_change", "invoices_gapless", "billing_invoice_guard", "billing_close_guard"] {
        refused(
            &mut owner,
            o,
            &format!(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'"
            ),
        );
        refused(&mut owner, o, &format!("ALTER FUNCTION {function}() RENAME TO kept"));
        refused(&mut owner, o, &format!("DROP FUNCTION {function}() CASCADE"));
    }
    for sql in [
        "DROP EVENT TRIGGER gpuledger_guard_ddl",
        "ALTER EVENT TRIGGER gpuledger_guard_drop DISABLE",
        "DROP SCHEMA gpuledger_guard CASCADE",
        "CREATE OR REPLACE FUNCTION gpuledger_guard.guard_triggers() RETURNS SETOF oid LANGUAGE sql AS 'SELECT 1::oid'",
        "GRANT pg_execute_server_program TO current_user",
        "GRANT pg_write_server_files TO current_user",
        "ALTER ROLE current_user SUPERUSER",
        "ALTER ROLE current_user CREATEROLE",
        "CREATE ROLE x SUPERUSER",
        "CREATE ROLE x",
        "SET ROLE postgres",
    ] {
        refused(&mut owner, o, sql);
    }
    // What migrations do stays open to it.
    let mut tx = owner.transaction().unwrap();
    tx.batch_execute(
        "ALTER TABLE invoices ADD COLUMN added int; CREATE TABLE added (a int);
         CREATE FUNCTION added() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
         CREATE TRIGGER added BEFORE INSERT ON added FOR EACH ROW EXECUTE FUNCTION added();
         ALTER TABLE added DISABLE TRIGGER added; DROP TABLE added;",
    )
    .unwrap();
    tx.rollback().unwrap();
    // Every guard is still on.
    let off: i64 = owner
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname IN ('refuse_update_delete', 'refuse_truncate') AND tgenabled <> 'O'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(off, 0);
}

/// The operator's logins of 0016: the auditor reads the ledger, the projection and the issued
/// documents and writes nothing; the token login issues and revokes tokens and reads nothing else.
#[test]
fn each_operator_login_does_its_duty_and_nothing_more() {
    let _serial = serial();
    let db = two_tenants("roles_operators");
    let mut auditor = connect(&login_url(&db, "gpuledger_auditor"));
    store::roles::refuse_privileged_reader(&mut auditor).unwrap();
    for table in [
        "ledger_events",
        "ledger_events_y2026m08",
        "ledger_streams",
        "usage_hourly",
        "invoices",
        "billing_closes",
        "quarantine",
    ] {
        auditor.query(&format!("SELECT * FROM {table} LIMIT 1"), &[]).unwrap();
    }
    store::read::verify_chains(&mut auditor).unwrap();
    store::read::live_hourly(&mut auditor).unwrap();
    let a = "the auditor";
    refused(
        &mut auditor,
        a,
        "INSERT INTO usage_hourly VALUES ('tenant-c', 'nvidia-h200', 'p', '2026-08-01T00:00:00Z', 1, 1)",
    );
    refused(&mut auditor, a, "UPDATE ledger_streams SET head_pos = head_pos");
    refused(&mut auditor, a, "SELECT ledger_ensure_month('2026-09-01')");
    for table in ["api_tokens", "api_token_revocations", "ui_sessions", "api_wall_key", "access_log"] {
        refused(&mut auditor, a, &format!("SELECT * FROM {table}"));
    }
    refused(&mut auditor, a, "CREATE SCHEMA scratch");
    refused(&mut auditor, a, "CREATE TABLE public.x (a int)");
    refused(&mut auditor, a, "SET ROLE gpuledger_writer");

    let mut tokens = connect(&login_url(&db, "gpuledger_tokens"));
    store::roles::refuse_privileged(&mut tokens).unwrap();
    let (id, _) =
        store::tokens::create_token(&mut tokens, "tenant", Some("tenant-a"), "t", Duration::days(1), Utc::now())
            .unwrap();
    assert!(
        store::tokens::create_token(&mut tokens, "tenant", Some("nobody"), "t", Duration::days(1), Utc::now()).is_err()
    );
    store::tokens::revoke_token(&mut tokens, id, "test", Utc::now()).unwrap();
    let t = "the token login";
    for table in
        ["ledger_events", "usage_hourly", "invoices", "ledger_streams", "ui_sessions", "access_log", "api_wall_key"]
    {
        refused(&mut tokens, t, &format!("SELECT * FROM {table}"));
    }
    refused(&mut tokens, t, "UPDATE api_tokens SET expires_at = now() + interval '10 years'");
    refused(&mut tokens, t, "DELETE FROM api_token_revocations");
    refused(&mut tokens, t, "SELECT api_open_wall(sha256('x'))");
    // A login with more rights than its duty is refused: a reader that may write, a token reader.
    let e = store::roles::refuse_privileged_reader(&mut connect(&login_url(&db, "gpuledger_finance"))).unwrap_err();
    assert!(e.to_string().contains("may change tables"), "{e}");
    let e = store::roles::refuse_privileged_reader(&mut tokens).unwrap_err();
    assert!(e.to_string().contains("reads the API tokens"), "{e}");
}

/// No row-level policy and no view reads a setting the session can change itself (only the sealed
/// scope of `api_wall_scope` is read, by the wall's functions).
#[test]
fn no_wall_trusts_a_plain_setting() {
    let _serial = serial();
    let db = fresh_db("roles_settings").unwrap();
    let rows = connect(&db)
        .query(
            "SELECT tablename || ' ' || policyname FROM pg_policies
              WHERE schemaname = 'public' AND (qual ILIKE '%current_setting%' OR with_check ILIKE '%current_setting%')
             UNION ALL
             SELECT viewname FROM pg_views WHERE schemaname = 'public' AND definition ILIKE '%current_setting%'",
            &[],
        )
        .unwrap();
    let found: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(found.is_empty(), "walls reading a setting: {found:?}");
}

/// Each service and operator command refuses to start on the owner's login, and the API server
/// holds no connection but its own roles'.
#[test]
fn the_services_refuse_a_privileged_login() {
    let _serial = serial();
    let db = two_tenants("roles_refuse");
    for (variable, args) in [
        (
            "GPULEDGER_INGEST_DATABASE_URL",
            vec!["ingest", "--topic", "t.roles", "--group", "g", "--idle-exit-secs", "1"],
        ),
        ("GPULEDGER_FINANCE_DATABASE_URL", vec!["invoices", "list", "--period", "2026-08"]),
        ("GPULEDGER_FINANCE_DATABASE_URL", vec!["reference", "show"]),
        ("GPULEDGER_FINANCE_DATABASE_URL", vec!["budget", "report", "--as-of", "2026-08-01"]),
        ("GPULEDGER_API_DATABASE_URL", vec!["serve", "--listen", "127.0.0.1:0"]),
        ("GPULEDGER_FINANCE_DATABASE_URL", vec!["serve", "--listen", "127.0.0.1:0"]),
        ("GPULEDGER_FINANCE_DATABASE_URL", vec!["audit", "checkpoint"]),
        ("GPULEDGER_AUDITOR_DATABASE_URL", vec!["status"]),
        ("GPULEDGER_AUDITOR_DATABASE_URL", vec!["verify"]),
        ("GPULEDGER_AUDITOR_DATABASE_URL", vec!["report"]),
        ("GPULEDGER_AUDITOR_DATABASE_URL", vec!["audit", "verify"]),
        ("GPULEDGER_AUDITOR_DATABASE_URL", vec!["audit", "export", "--out", "/nonexistent/never-written"]),
        ("GPULEDGER_TOKENS_DATABASE_URL", vec!["tokens", "create", "--role", "finance", "--label", "x"]),
    ] {
        let out = Command::new(bin())
            .args(&args)
            .env("GPULEDGER_DATABASE_URL", &db)
            .env(variable, &db)
            .env("GPULEDGER_KAFKA_BROKERS", brokers())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{variable} {args:?} ran as the owner");
        assert!(err.contains("owns the ledger"), "{variable} {args:?}: {err}");
    }
    // The auditor's commands also refuse a login that may write (finance's).
    let out = Command::new(bin())
        .args(["verify"])
        .env("GPULEDGER_DATABASE_URL", &db)
        .env("GPULEDGER_AUDITOR_DATABASE_URL", login_url(&db, "gpuledger_finance"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("may change tables"), "{err}");

    let s = serve_api(&db);
    let (_, token) =
        store::tokens::create_token(&mut connect(&db), "tenant", Some("tenant-a"), "t", Duration::days(1), Utc::now())
            .unwrap();
    let (status, _, body) = http(&s, "GET", "/v1/invoices", Some(&token));
    assert_eq!(status, 200, "{body}");
    let name = db.rsplit('/').next().unwrap();
    let logins: Vec<String> = connect(&superuser_url(&db))
        .query(
            "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()
                AND backend_type = 'client backend' ORDER BY 1",
            &[&name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(logins, ["gpuledger_api"], "the server's connections");
}

/// Who may do what on every table, view and sequence: the one place where a relation's
/// privileges are decided. A relation missing here, or a grant that differs, fails
/// [`every_relation_has_exactly_the_decided_privileges`]. Columns: the relation (a partition
/// counts as its parent), then the privileges of `gpuledger_writer` (and so of its members
/// `gpuledger_ingest` and `gpuledger_finance`), of `gpuledger_finance` alone, and of
/// `gpuledger_api`. Letters as in PostgreSQL's ACLs: r SELECT, a INSERT, w UPDATE, d DELETE,
/// D TRUNCATE, x REFERENCES, t TRIGGER; for sequences U USAGE, r SELECT, w UPDATE. PUBLIC and the
/// other roles get nothing; only the owner (`migrate`) holds more.
const PRIVILEGES: &[(&str, &str, &str, &str)] = &[
    // relation                     writer  finance  api
    ("access_log", "", "", "a"),
    ("access_log_access_id_seq", "", "", ""),
    ("api_ledger_events", "", "", "r"),
    ("api_token_revocations", "", "", ""),
    ("api_tokens", "", "", ""),
    ("api_wall_key", "", "", ""),
    ("billing_closes", "", "ra", "r"),
    ("collector_coverage", "ra", "", ""),
    ("collector_cursors", "raw", "", ""),
    ("collector_outbox", "adr", "", ""),
    ("gpu_occupancy", "ra", "", ""),
    ("invoices", "", "ra", "r"),
    ("ledger_commit_clock", "rw", "", ""),
    ("ledger_event_ids", "ra", "", ""),
    ("ledger_events", "ra", "", ""),
    ("ledger_seq", "U", "", ""),
    ("ledger_streams", "raw", "", "r"),
    ("ledger_streams_stream_id_seq", "", "", ""),
    ("quarantine", "ra", "", ""),
    ("quarantine_quarantine_id_seq", "", "", ""),
    ("schema_migrations", "r", "", ""),
    ("ui_sessions", "", "", ""),
    ("usage_hourly", "raw", "", "r"),
];

/// What the operator's logins of migration 0016 may do, for the relations where they may do
/// anything (every other relation: nothing): the read-only `gpuledger_auditor` and the token
/// login `gpuledger_tokens`. Letters as in [`PRIVILEGES`].
const OPERATORS: &[(&str, &str, &str)] = &[
    // relation                     auditor tokens
    ("api_token_revocations", "", "ar"),
    ("api_tokens", "", "ar"),
    ("billing_closes", "r", ""),
    ("gpu_occupancy", "r", ""),
    ("invoices", "r", ""),
    ("ledger_commit_clock", "r", ""),
    ("ledger_event_ids", "r", ""),
    ("ledger_events", "r", ""),
    ("ledger_streams", "r", ""),
    ("quarantine", "r", ""),
    ("schema_migrations", "r", ""),
    ("usage_hourly", "r", ""),
];

/// Which roles may call each SECURITY DEFINER function (it runs with the owner's rights); every
/// such function must be listed. "writer" includes its members ingest and finance.
const DEFINERS: &[(&str, &[&str])] = &[
    ("api_open_wall", &["gpuledger_api"]),
    ("api_session_end", &["gpuledger_api"]),
    ("api_session_lookup", &["gpuledger_api"]),
    ("api_session_open", &["gpuledger_api"]),
    ("api_token_lookup", &["gpuledger_api"]),
    ("api_wall_all", &["gpuledger_api"]),
    ("api_wall_scope", &[]),
    ("api_wall_seal", &[]),
    ("api_wall_tenant", &["gpuledger_api"]),
    // 0009: the guards of the billing index run as triggers, never called by anyone.
    ("billing_close_guard", &[]),
    ("billing_invoice_guard", &[]),
    ("gpuledger_tenant_known", &["gpuledger_api", "gpuledger_tokens"]),
    ("ledger_ensure_month", &["gpuledger_writer", "gpuledger_ingest", "gpuledger_finance"]),
];

/// The roles the matrix is checked for: the group, the five logins, and everyone.
const CHECKED: [&str; 7] = [
    "gpuledger_writer",
    "gpuledger_ingest",
    "gpuledger_finance",
    "gpuledger_api",
    "gpuledger_auditor",
    "gpuledger_tokens",
    "public",
];

/// What [`PRIVILEGES`] gives `role` on the relation of this row (letters sorted).
fn expected(row: &(&str, &str, &str, &str), role: &str) -> String {
    let (_, writer, finance, api) = *row;
    let granted = match role {
        "gpuledger_writer" | "gpuledger_ingest" => writer.to_string(),
        "gpuledger_finance" => format!("{writer}{finance}"),
        "gpuledger_api" => api.to_string(),
        "gpuledger_auditor" | "gpuledger_tokens" => OPERATORS
            .iter()
            .find(|o| o.0 == row.0)
            .map(|o| if role == "gpuledger_auditor" { o.1 } else { o.2 })
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    };
    let mut letters: Vec<char> = granted.chars().collect();
    letters.sort_unstable();
    letters.dedup();
    letters.into_iter().collect()
}

#[test]
fn every_relation_has_exactly_the_decided_privileges() {
    let _serial = serial();
    let db = two_tenants("roles_matrix");
    let mut c = connect(&db);
    let mut wrong = Vec::new();
    for role in CHECKED {
        let rows = c
            .query(
                "SELECT coalesce(p.relname, c.relname)::text, c.relname::text,
                        CASE WHEN c.relkind = 'S' THEN concat(
                            CASE WHEN has_sequence_privilege($1, c.oid, 'USAGE') THEN 'U' END,
                            CASE WHEN has_sequence_privilege($1, c.oid, 'SELECT') THEN 'r' END,
                            CASE WHEN has_sequence_privilege($1, c.oid, 'UPDATE') THEN 'w' END)
                        ELSE concat(
                            CASE WHEN has_table_privilege($1, c.oid, 'TRUNCATE') THEN 'D' END,
                            CASE WHEN has_table_privilege($1, c.oid, 'INSERT') THEN 'a' END,
                            CASE WHEN has_table_privilege($1, c.oid, 'DELETE') THEN 'd' END,
                            CASE WHEN has_table_privilege($1, c.oid, 'SELECT') THEN 'r' END,
                            CASE WHEN has_table_privilege($1, c.oid, 'TRIGGER') THEN 't' END,
                            CASE WHEN has_table_privilege($1, c.oid, 'UPDATE') THEN 'w' END,
                            CASE WHEN has_table_privilege($1, c.oid, 'REFERENCES') THEN 'x' END) END
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   LEFT JOIN pg_inherits i ON c.relispartition AND i.inhrelid = c.oid
                   LEFT JOIN pg_class p ON p.oid = i.inhparent
                  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                  ORDER BY 2",
                &[&role],
            )
            .unwrap();
        assert!(rows.len() > PRIVILEGES.len(), "the partition of two_tenants is checked too");
        for r in rows {
            let (decided_as, relation, has): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            match PRIVILEGES.iter().find(|p| p.0 == decided_as) {
                None => wrong.push(format!("{relation}: no decision in PRIVILEGES (tests/roles.rs)")),
                Some(p) if expected(p, role) != has => {
                    wrong.push(format!("{relation}: {role} has '{has}', decided '{}'", expected(p, role)))
                }
                Some(_) => {}
            }
        }
    }
    // A decision without a relation is a stale line.
    for relation in PRIVILEGES.iter().map(|p| p.0).chain(OPERATORS.iter().map(|o| o.0)) {
        let exists: bool =
            c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("public.{relation}")]).unwrap().get(0);
        if !exists {
            wrong.push(format!("{relation}: decided in PRIVILEGES but not in the schema"));
        }
    }

    let definers: Vec<(String, String)> = c
        .query(
            "SELECT p.oid::regprocedure::text, p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'public' AND p.prosecdef ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (signature, name) in &definers {
        let Some((_, callers)) = DEFINERS.iter().find(|d| d.0 == name) else {
            wrong.push(format!("{signature}: a SECURITY DEFINER function without a decision in DEFINERS"));
            continue;
        };
        for role in CHECKED {
            let may: bool = c
                .query_one("SELECT has_function_privilege($1, $2::text::regprocedure, 'EXECUTE')", &[&role, signature])
                .unwrap()
                .get(0);
            if may != callers.contains(&role) {
                wrong.push(format!("{signature}: EXECUTE for {role} is {may}"));
            }
        }
    }
    for (name, _) in DEFINERS {
        if !definers.iter().any(|(_, n)| n == name) {
            wrong.push(format!("{name}: decided in DEFINERS but no such SECURITY DEFINER function"));
        }
    }

    // Nothing granted around the matrix: no column grants, no default privileges for tables to
    // come, no object owned by a runtime role, no CREATE in the schema or the database.
    let around: Vec<String> = c
        .query(
            "SELECT 'column grant on ' || c.relname || '.' || a.attname
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND a.attacl IS NOT NULL
             UNION ALL SELECT 'default privileges ' || d.defaclacl::text FROM pg_default_acl d
             UNION ALL SELECT r || ' owns ' || c.relname FROM pg_class c, unnest($1::text[]) r
              WHERE pg_has_role(r, c.relowner, 'MEMBER') AND c.relnamespace = 'public'::regnamespace
             UNION ALL SELECT r || ' owns ' || p.proname FROM pg_proc p, unnest($1::text[]) r
              WHERE pg_has_role(r, p.proowner, 'MEMBER') AND p.pronamespace = 'public'::regnamespace
             UNION ALL SELECT r || ' may create in the schema' FROM unnest($1::text[]) r
              WHERE has_schema_privilege(r, 'public', 'CREATE')
             UNION ALL SELECT r || ' may create in the database' FROM unnest($1::text[]) r
              WHERE has_database_privilege(r, current_database(), 'CREATE')",
            &[&CHECKED[..6].to_vec()],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    wrong.extend(around);
    assert!(wrong.is_empty(), "privileges differ from the decisions in tests/roles.rs:\n{}", wrong.join("\n"));
}
