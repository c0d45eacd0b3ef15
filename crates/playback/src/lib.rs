//! A playback server for recorded dcgm-exporter scrapes: the n-th `GET /metrics` over real
//! HTTP/1.1 is answered with the n-th recorded body, byte for byte; once the recording is over,
//! `GET /metrics` answers 404 (a collector then logs a failed scrape and observes nothing, so
//! no time is invented after the last scrape, and no scrape is seen twice). `GET /healthz`
//! says how many scrapes were served and never advances the sequence. Requests are answered
//! one at a time in arrival order, each on its own connection (`Connection: close`), so the
//! order of the bodies is the order of the requests.
//!
//! `recording` is the generator of the demo's recording (fixtures/dcgm/demo/).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub mod recording;

/// Most scrapes one recording holds.
pub const SCRAPES_MAX: usize = 100_000;
/// Largest recorded scrape read (a large exporter writes a few MB).
pub const SCRAPE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Largest request head read; anything longer is answered 400.
const REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;
/// How long a client may take to send its request head.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The recorded scrapes of `dir`: its `*.prom` files in name order, each one response body.
pub fn read_recording(dir: &Path) -> anyhow::Result<Vec<String>> {
    use anyhow::{bail, Context};
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "prom"));
    paths.sort();
    if paths.is_empty() || paths.len() > SCRAPES_MAX {
        bail!("{}: {} scrapes (*.prom); 1 to {SCRAPES_MAX} are served", dir.display(), paths.len());
    }
    paths
        .iter()
        .map(|p| {
            let len = std::fs::metadata(p)?.len();
            if len > SCRAPE_BYTES_MAX {
                bail!("{}: {len} bytes, more than {SCRAPE_BYTES_MAX}", p.display());
            }
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        })
        .collect()
}

/// A playback server running on its own thread.
pub struct Playback {
    pub addr: SocketAddr,
    served: Arc<AtomicUsize>,
}

impl Playback {
    /// Serves `scrapes` on `listener` from a new thread, for as long as the process runs.
    pub fn start(listener: TcpListener, scrapes: Vec<String>) -> std::io::Result<Playback> {
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        std::thread::spawn(move || serve(&listener, &scrapes, &counter));
        Ok(Playback { addr, served })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many `GET /metrics` were answered with a scrape (not counting 404s after the end).
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// Answers requests on `listener` one at a time, forever; `served` counts the scrapes served.
pub fn serve(listener: &TcpListener, scrapes: &[String], served: &AtomicUsize) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        // A client that goes away mid-request costs nothing but its own answer.
        let _ = answer(stream, scrapes, served);
    }
}

fn answer(mut stream: TcpStream, scrapes: &[String], served: &AtomicUsize) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_READ_TIMEOUT))?;
    let (status, body) = match read_request_line(&stream)? {
        None => ("400 Bad Request", "a request line and headers of at most 16 KiB\n".to_string()),
        Some(line) => route(&line, scrapes, served),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// The request line, after reading the whole head (up to the blank line); `None` if the head is
/// too long or ends early.
fn read_request_line(stream: &TcpStream) -> std::io::Result<Option<String>> {
    let mut reader = BufReader::new(stream);
    let mut first = None;
    let mut read = 0;
    loop {
        let mut line = String::new();
        let n = reader.by_ref().take((REQUEST_HEAD_BYTES_MAX - read) as u64 + 1).read_line(&mut line)?;
        read += n;
        if n == 0 || read > REQUEST_HEAD_BYTES_MAX {
            return Ok(None);
        }
        if line == "\r\n" || line == "\n" {
            return Ok(first);
        }
        first.get_or_insert(line.trim_end().to_string());
    }
}

fn route(request_line: &str, scrapes: &[String], served: &AtomicUsize) -> (&'static str, String) {
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            // Claims the next scrape only while there is one, so `served` never passes the end.
            let next =
                served.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < scrapes.len()).then_some(n + 1));
            match next {
                Ok(n) => ("200 OK", scrapes[n].clone()),
                Err(_) => ("404 Not Found", format!("the recording ended after {} scrapes\n", scrapes.len())),
            }
        }
        ("GET", "/healthz") => {
            ("200 OK", format!("served {} of {} scrapes\n", served.load(Ordering::SeqCst), scrapes.len()))
        }
        ("GET", _) => ("404 Not Found", "GET /metrics or /healthz\n".to_string()),
        _ => ("405 Method Not Allowed", "GET only\n".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    fn check(path: &str, want_status: &str, want_body: &str, p: &Playback) {
        let (status, body) = get(p.addr, path);
        assert_eq!((status.as_str(), body.as_str()), (want_status, want_body), "GET {path}");
    }

    #[test]
    fn each_get_gets_the_next_scrape_then_404_and_health_does_not_advance() {
        let p =
            Playback::start(TcpListener::bind("127.0.0.1:0").unwrap(), vec!["a 1\n".into(), "b 2\n".into()]).unwrap();
        check("/healthz", "HTTP/1.1 200 OK", "served 0 of 2 scrapes\n", &p);
        check("/metrics", "HTTP/1.1 200 OK", "a 1\n", &p);
        check("/healthz", "HTTP/1.1 200 OK", "served 1 of 2 scrapes\n", &p);
        check("/metrics?x=1", "HTTP/1.1 200 OK", "b 2\n", &p);
        check("/metrics", "HTTP/1.1 404 Not Found", "the recording ended after 2 scrapes\n", &p);
        check("/metrics", "HTTP/1.1 404 Not Found", "the recording ended after 2 scrapes\n", &p);
        check("/other", "HTTP/1.1 404 Not Found", "GET /metrics or /healthz\n", &p);
        assert_eq!(p.served(), 2);
    }

    #[test]
    fn a_head_that_ends_early_is_refused_without_advancing() {
        let p = Playback::start(TcpListener::bind("127.0.0.1:0").unwrap(), vec!["a 1\n".into()]).unwrap();
        let mut s = TcpStream::connect(p.addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert_eq!(p.served(), 0);
        check("/metrics", "HTTP/1.1 200 OK", "a 1\n", &p);
    }
}
