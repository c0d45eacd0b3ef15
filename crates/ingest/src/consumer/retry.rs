//! Retry on outage: database connections opened again and again while the database is down or
//! restarting, and a writer's wait (reconnecting if need be) before it tries the same batch again.

use super::writer::Writer;
use super::IngestStats;
use crate::IngestError;
use postgres::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::warn;

/// What lies under an error (the server's message under "database error"), for the log.
pub(super) fn cause(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = e.source();
    while let Some(c) = next {
        parts.push(c.to_string());
        next = c.source();
    }
    parts.join(": ")
}

/// Opens a connection as the writer role, waiting while the database is down or restarting.
/// `Ok(None)`: stopped while waiting. An error that waiting cannot cure (wrong password, no such
/// database or role) is returned, not retried forever.
fn connect_until_up(url: &str, stop: &AtomicBool, stats: &mut IngestStats) -> Result<Option<Client>, IngestError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let opened = store::connect(url).and_then(|mut c| {
            c.batch_execute("SET ROLE gpuledger_writer").map_err(store::StoreError::from)?;
            Ok(c)
        });
        match opened {
            Ok(c) => return Ok(Some(c)),
            Err(e) if e.is_transient() => {
                stats.db_retries += 1;
                warn!(error = %e, cause = %cause(&e), "database unavailable, waiting");
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                let why = cause(&e);
                return Err(IngestError::Other(format!(
                    "cannot use the database as the ledger's writer (has `gpuledger migrate` run?): {e} ({why})"
                )));
            }
        }
    }
}

/// A writer's two connections (see `store::append::LedgerWriter`), retried until both open.
pub(super) fn connections_until_up(
    url: &str,
    stop: &AtomicBool,
    stats: &mut IngestStats,
) -> Result<Option<(Client, Client)>, IngestError> {
    let Some(db) = connect_until_up(url, stop, stats)? else { return Ok(None) };
    let Some(check) = connect_until_up(url, stop, stats)? else { return Ok(None) };
    Ok(Some((db, check)))
}

impl Writer<'_> {
    /// Waits before the same batch is tried again after a transient error, reconnecting if the
    /// connection is gone. False: the ingester is stopping (the batch stays uncommitted; its offsets
    /// were not advanced, so the next owner reads it again).
    pub(super) fn wait_to_retry(&mut self, e: &store::StoreError, backoff: &mut Duration) -> Result<bool, IngestError> {
        self.stats.db_retries += 1;
        warn!(error = %e, cause = %cause(e), "database write failed, retrying the same batch");
        if self.cfg.stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        std::thread::sleep(*backoff);
        *backoff = (*backoff * 2).min(Duration::from_secs(5));
        if self.db.is_closed() {
            match connections_until_up(&self.cfg.database_url, &self.cfg.stop, &mut self.stats)? {
                Some((db, check)) => self.db.reconnect(db, check),
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}
