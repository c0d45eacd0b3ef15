//! What a writer is handed: consumed messages with the validator's verdict, in runs of
//! consecutive offsets of one claimed partition.

use super::Claim;
use domain::usage::{Rejection, RejectionCode, UsageRecorded};

/// One consumed message and the pure validator's verdict on it.
#[derive(Debug, Clone)]
pub struct InMessage {
    pub offset: i64,
    /// The message key as received; not kept for a valid event, whose key is its tenant id.
    key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub verdict: Result<UsageRecorded, Rejection>,
}

impl InMessage {
    pub fn new(offset: i64, key: Option<Vec<u8>>, payload: Vec<u8>, verdict: Result<UsageRecorded, Rejection>) -> Self {
        let key = if verdict.is_ok() { None } else { key };
        InMessage { offset, key, payload, verdict }
    }

    /// Sets a valid event aside: the database refused it (see `StoreError::refusal`), so it is
    /// quarantined with the database's reason instead. Returns false if it was not valid.
    pub fn refuse(&mut self, why: &str) -> bool {
        let Ok(e) = &self.verdict else { return false };
        let mut r = Rejection::new(RejectionCode::RefusedByDatabase, format!("the database refused the event: {why}"));
        r.event_id = Some(e.event_id);
        r.tenant_id = Some(e.tenant_id.clone());
        self.key = Some(e.tenant_id.as_bytes().to_vec());
        self.verdict = Err(r);
        true
    }

    /// The message key: as received (a valid event's key is its tenant id, checked).
    pub fn key(&self) -> Option<&[u8]> {
        match &self.verdict {
            Ok(e) => Some(e.tenant_id.as_bytes()),
            Err(_) => self.key.as_deref(),
        }
    }
}

/// A run of consecutive offsets of one claimed partition.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    pub claim: Claim,
    pub messages: Vec<InMessage>,
}
