//! The API latency benchmark (docs/benchmarks.md): many concurrent clients, each with its own
//! token and keep-alive connection, asking for a month of one tenant's hourly usage, beside the
//! floor: the same SQL run directly in PostgreSQL by as many concurrent clients through a pool of
//! the same size as the server's.

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl LoadReport {
    fn from(mut micros: Vec<u64>, errors: u64, elapsed: Duration) -> LoadReport {
        micros.sort_unstable();
        let at =
            |q: usize| micros.get((micros.len() * q / 100).min(micros.len().saturating_sub(1))).copied().unwrap_or(0);
        LoadReport {
            requests: micros.len() as u64,
            errors,
            elapsed,
            p50: Duration::from_micros(at(50)),
            p99: Duration::from_micros(at(99)),
            max: Duration::from_micros(micros.last().copied().unwrap_or(0)),
        }
    }

    /// Completed requests per second (integer arithmetic).
    pub fn per_second(&self) -> u64 {
        let ms = self.elapsed.as_millis().max(1) as u64;
        self.requests * 1000 / ms
    }
}

/// One load: a month of one tenant's hourly usage, asked for by `clients` concurrent clients.
pub struct Load<'a> {
    pub database_url: &'a str,
    /// The server's connection pool, and the floor's.
    pub pool_size: usize,
    pub tenant: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub clients: usize,
    /// The tenant's tokens, at least one per client.
    pub tokens: &'a [String],
}

impl Load<'_> {
    /// [`http_load`] of this load's clients and tokens.
    pub async fn http(&self, addr: SocketAddr, path: &str, duration: Duration) -> anyhow::Result<LoadReport> {
        http_load(addr, path, self.tokens, self.clients, duration).await
    }

    /// [`floor_load`] of this load's tenant, month, clients and pool.
    pub async fn floor(&self, duration: Duration) -> anyhow::Result<LoadReport> {
        floor_load(self.database_url, self.pool_size, self.tenant, self.from, self.to, self.clients, duration).await
    }
}

/// `clients` clients, each on its own HTTP/1.1 keep-alive connection, requesting `path` back to
/// back until `duration` is over; client `i` takes turns over tokens `i`, `i + clients`, ... Latency
/// is from sending the request to the last body byte.
async fn http_load(
    addr: SocketAddr,
    path: &str,
    tokens: &[String],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(clients >= 1 && tokens.len() >= clients, "at least one token per client");
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for i in 0..clients {
        let path = path.to_string();
        let auths: Vec<String> = tokens.iter().skip(i).step_by(clients).map(|t| format!("Bearer {t}")).collect();
        tasks.push(tokio::spawn(async move {
            let mut micros = Vec::new();
            let mut errors = 0u64;
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut turn = 0usize;
            while Instant::now() < deadline {
                let auth = &auths[turn % auths.len()];
                turn += 1;
                let req = hyper::Request::get(path.as_str())
                    .header(hyper::header::HOST, "localhost")
                    .header(hyper::header::AUTHORIZATION, auth.as_str())
                    .body(Empty::<Bytes>::new())?;
                let t0 = Instant::now();
                send.ready().await?;
                let res = send.send_request(req).await?;
                let ok = res.status() == hyper::StatusCode::OK;
                let body = res.into_body().collect().await?.to_bytes();
                if ok && !body.is_empty() {
                    micros.push(t0.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            anyhow::Ok((micros, errors))
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (m, e) = t.await??;
        all.extend(m);
        errors += e;
    }
    Ok(LoadReport::from(all, errors, start.elapsed()))
}

/// The floor: `clients` concurrent clients running the API's usage SQL directly, through a pool
/// of `pool_size` connections (the server's pool), with no HTTP, token or row-level security.
async fn floor_load(
    database_url: &str,
    pool_size: usize,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<LoadReport> {
    // The pool as `api::state` builds the server's.
    let pg: tokio_postgres::Config = database_url.parse()?;
    let mgr =
        Manager::from_config(pg, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(mgr).max_size(pool_size).build()?;
    let sql = api::usage_sql("hour", false, false);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (pool, sql, tenant) = (pool.clone(), sql.clone(), tenant.to_string());
        tasks.push(tokio::spawn(async move {
            let mut micros = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let c = pool.get().await?;
                // An unnamed statement, as the API sends it: planned for these parameters (a
                // cached generic plan would scan every tenant's rows).
                match c.query(sql.as_str(), &[&tenant, &from, &to]).await {
                    Ok(rows) if !rows.is_empty() => micros.push(t0.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
            }
            anyhow::Ok((micros, errors))
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (m, e) = t.await??;
        all.extend(m);
        errors += e;
    }
    Ok(LoadReport::from(all, errors, start.elapsed()))
}
