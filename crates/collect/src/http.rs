//! One scrape of one endpoint over HTTP, with a timeout for the whole request.

use std::time::Duration;

/// The largest exposition read (a 10,000-GPU exporter with the default counters writes ~20 MB).
pub const BODY_BYTES_MAX: u64 = 256 * 1024 * 1024;

pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(true).build().into()
}

/// The body of `GET url`, or why not (timeout, refused, a status other than 2xx, too large).
pub fn fetch(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    response.body_mut().with_config().limit(BODY_BYTES_MAX).read_to_string().map_err(|e| e.to_string())
}
