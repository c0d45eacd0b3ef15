//! Serving connections with limits that `axum::serve` does not set: a header-read timeout (a
//! client that never finishes its headers, or sits silent on an idle connection, is
//! disconnected), and a limit on open connections (beyond it, new connections wait in the
//! listen queue until one closes). The request timeout is a layer of the router (see
//! [`crate::router`]). The loop is hyper-util's parts (hyper's HTTP/1 connection with its timer,
//! graceful shutdown), assembled here because axum's `serve` exposes neither setting.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for a client to send a request's headers (and for an idle connection to start its next).
    pub header_read_timeout: Duration,
    /// Time for the whole request, body and handler included (then 503).
    pub request_timeout: Duration,
    /// Connections open at once; more wait in the listen queue.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_connections: 512,
        }
    }
}

/// How long open connections may finish their requests after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

/// Accepts connections on `listener` and serves `app` on each, within `limits`, until `shutdown`.
pub(crate) async fn run(listener: TcpListener, app: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        // A slot first, then the next connection: beyond the limit they wait in the kernel's queue.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after the drain time"),
    }
}
