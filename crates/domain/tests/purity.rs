//! Keeps the domain crate pure (ARCHITECTURE.md: "The domain crate knows nothing about
//! PostgreSQL, Kafka, HTTP, the clock or the file system"): its dependencies are an allow-list,
//! so a new one must be judged here, and its source names no I/O, clock, sleep, process
//! environment or OS entropy. The callers pass `now` in; randomness comes from a seed.

use std::path::{Path, PathBuf};

/// What the domain crate may depend on, and why each is pure. A dependency not listed fails the
/// test: judge it (does it do I/O, read the clock, spawn, block?) and add it with its reason.
const ALLOWED: &[(&str, &str)] = &[
    ("chrono", "dates and instants as values (the clock is never read here: see FORBIDDEN)"),
    ("chrono-tz", "the Berlin time-zone rules, compiled in"),
    ("csv", "CSV exports written into a Vec<u8>"),
    ("hex", "hex encoding of hashes"),
    ("memchr", "byte search in the event parser"),
    ("rand", "the simulator's draws, from a seeded generator only"),
    ("rand_chacha", "the simulator's seeded generator"),
    ("rust_decimal", "exact decimals for GPU-seconds and money"),
    ("rustc-hash", "a fast hasher for in-memory maps"),
    ("serde", "serialization traits"),
    ("serde_json", "JSON values and canonical bytes, in memory"),
    ("sha2", "SHA-256 of the hash chain and documents"),
    ("thiserror", "error types"),
    ("uuid", "event ids as values (v5 and seeded v7, never from the OS)"),
];

/// Crates that do I/O or run async; named in the failure, so the message says why at once.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio-postgres",
    "postgres",
    "rdkafka",
    "axum",
    "hyper",
    "reqwest",
    "deadpool",
    "sqlx",
    "diesel",
    "tower",
    "mio",
    "async-std",
    "ureq",
    "notify",
];

/// What the domain's source must not name: the file system, the network, processes and the
/// environment, the clock, sleeping, OS entropy, and the I/O crates.
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::thread",
    "std::time::SystemTime",
    "std::time::Instant",
    "SystemTime",
    "Instant::now",
    "Utc::now",
    "Local::now",
    "thread::sleep",
    "thread_rng",
    "rand::random",
    "rand::rng",
    "OsRng",
    "from_entropy",
    "from_os_rng",
    "tokio",
    "postgres",
    "rdkafka",
    "reqwest",
    "hyper",
    "axum",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The dependencies a `Cargo.toml` declares outside `[dev-dependencies]`: normal, build and
/// target-specific ones (`name = ...`, `name.workspace = true`, `[dependencies.name]`). A line
/// parser, enough for the manifests of this workspace.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            let table = line.trim_matches(|c| c == '[' || c == ']').trim();
            let last = table.rsplit('.').next().unwrap_or(table);
            let is_deps = |t: &str| t == "dependencies" || t == "build-dependencies";
            in_deps = is_deps(last);
            // `[dependencies.name]` / `[target.'cfg(..)'.dependencies.name]`
            if !in_deps {
                let mut parts = table.rsplitn(2, '.');
                let (name, parent) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let parent_last = parent.rsplit('.').next().unwrap_or(parent);
                if is_deps(parent_last) {
                    found.push(name.trim_matches('"').to_string());
                }
            }
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split(['=', '.']).next().unwrap_or("").trim().trim_matches('"');
        if !key.is_empty() {
            found.push(key.to_string());
        }
    }
    found
}

/// The dependencies that are not on the allow-list, each with why it fails.
fn unjudged(manifest: &str) -> Vec<String> {
    dependencies(manifest)
        .into_iter()
        .filter(|d| !ALLOWED.iter().any(|(a, _)| a == d))
        .map(|d| {
            let io = IO_CRATES.iter().any(|c| d == *c || d.starts_with(&format!("{c}-")) || d.starts_with("deadpool"));
            if io {
                format!("{d}: an I/O or async crate; the domain crate must not depend on it")
            } else {
                format!("{d}: not on the allow-list; judge whether it is pure and add it to ALLOWED with why")
            }
        })
        .collect()
}

/// `std::{fs, time::SystemTime}` written out as `std::fs std::time::SystemTime`, so that grouped
/// imports are caught by the same patterns.
fn expand_groups(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(i) = out[from..].find("::{").map(|i| i + from) {
        let Some(close) = out[i..].find('}').map(|c| c + i) else { break };
        let prefix_start =
            out[..i].rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).map_or(0, |p| p + 1);
        let prefix = out[prefix_start..i].to_string();
        let items: Vec<String> = out[i + 3..close]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| format!("{prefix}::{s}"))
            .collect();
        out.push(' ');
        out.push_str(&items.join(" "));
        from = close;
    }
    out
}

/// A line without its trailing `//` comment (a `//` inside a string literal is kept).
fn strip_comment(line: &str) -> &str {
    let (mut in_string, mut escaped) = (false, false);
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '/' if !in_string && line[i + 1..].starts_with('/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Every forbidden name in a source file, as `line: pattern`; comments are skipped (the crate's
/// docs say what it does not do).
fn violations(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = expand_groups(&strip_comment(code).split_whitespace().collect::<Vec<_>>().join(" "));
        for pattern in FORBIDDEN {
            if code.contains(pattern) {
                found.push(format!("line {}: {pattern}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn domain_depends_only_on_judged_pure_crates() {
    let manifest = std::fs::read_to_string(manifest_dir().join("Cargo.toml")).expect("read Cargo.toml");
    let deps = dependencies(&manifest);
    assert!(deps.iter().any(|d| d == "rust_decimal"), "the manifest parser found no dependencies: {deps:?}");
    let bad = unjudged(&manifest);
    assert!(bad.is_empty(), "crates/domain/Cargo.toml:\n{}", bad.join("\n"));
}

#[test]
fn domain_source_names_no_io_clock_or_entropy() {
    let mut files = Vec::new();
    rust_files(&manifest_dir().join("src"), &mut files);
    files.sort();
    assert!(files.len() > 10, "found only {files:?}");
    let mut bad = Vec::new();
    for f in &files {
        let source = std::fs::read_to_string(f).expect("read source");
        bad.extend(violations(&source).into_iter().map(|v| format!("{}: {v}", f.display())));
    }
    assert!(bad.is_empty(), "the domain crate must stay pure (pass `now` in; seed randomness):\n{}", bad.join("\n"));
}

/// The checks themselves catch what they are for (so that a broken parser cannot pass silently).
#[test]
fn the_checks_catch_what_they_are_for() {
    let manifest = r#"
[package]
name = "domain"

[dependencies]
serde.workspace = true
tokio = { version = "1", features = ["rt"] }
deadpool-postgres = "0.14"
left-pad = "1"

[dependencies.reqwest]
version = "0.12"

[target.'cfg(unix)'.dependencies]
mio = "1"

[dev-dependencies]
proptest = "1"
"#;
    assert_eq!(dependencies(manifest), ["serde", "tokio", "deadpool-postgres", "left-pad", "reqwest", "mio"]);
    let bad = unjudged(manifest);
    assert_eq!(bad.len(), 5, "{bad:?}");
    assert!(bad[0].starts_with("tokio: an I/O"), "{bad:?}");
    assert!(bad[1].starts_with("deadpool-postgres: an I/O"), "{bad:?}");
    assert!(bad[2].starts_with("left-pad: not on the allow-list"), "{bad:?}");

    let source = r#"//! Never reads Utc::now: the caller passes it in.
use std::{collections::BTreeMap, fs};
use std::time::{Duration, SystemTime};
fn f() -> i64 {
    let t = chrono::Utc::now(); // the clock
    let url = "http://example"; // a comment after a string with // in it: Instant::now
    std::thread::sleep(std::time::Duration::from_millis(1));
    0
}
"#;
    let found = violations(source);
    let has = |line: usize, pattern: &str| found.iter().any(|v| v.starts_with(&format!("line {line}: {pattern}:")));
    assert!(!found.iter().any(|v| v.starts_with("line 1:")), "doc comments are skipped: {found:?}");
    assert!(has(2, "std::fs"), "{found:?}");
    assert!(has(3, "SystemTime"), "{found:?}");
    assert!(has(5, "Utc::now"), "{found:?}");
    assert!(has(7, "thread::sleep"), "{found:?}");
    assert!(!found.iter().any(|v| v.starts_with("line 6:")), "trailing comments are skipped: {found:?}");
    assert!(violations("let d = std::time::Duration::from_secs(1);").is_empty());
}
