//! Billing in the ledger: reference events (finance's price lists, profiles, contracts, usage
//! adjustments) appended to the stream `gpuledger.reference`; period closes and their invoices and
//! credit notes appended to `gpuledger.billing`; and the replay that re-derives every issued
//! document from the log alone and compares it byte for byte.

mod close;
mod local;
mod reference;
mod verify;

pub use close::*;
pub use local::*;
pub use reference::*;
pub use verify::*;

pub const REFERENCE_STREAM: &str = "gpuledger.reference";
pub const BILLING_STREAM: &str = "gpuledger.billing";
/// Closes are serialized cluster-wide by this advisory lock key.
const CLOSE_LOCK: &str = "gpuledger.billing.close";
