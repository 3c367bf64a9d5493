//! Domicile's residency engine.
//!
//! - [`policy`]: a validated, normalised policy document compiled into bit sets, and the
//!   decision semantics over a dataset's effective attributes;
//! - [`index`]: the effective attributes of every dataset along lineage (least fixpoint,
//!   declassification granted per job, one shortest lineage path per label and origin),
//!   maintained incrementally;
//! - [`engine`]: the two together behind one writer and many readers: decide, route, check a
//!   job, explain, scan for violations, policy impact, BatchDecide;
//! - [`dataset_ids`]: dataset ids checked against the OpenLineage naming rules, and their
//!   normal form (every lookup of an id goes through it);
//! - [`wire`]: BatchDecide's request and answer in the protobuf wire format, with the types
//!   generated from the repository's .proto files;
//! - [`log_entry`]: the decision log's entries (format 4), for every decision the router logs;
//! - [`unary`]: decisions asked one at a time, queued for the decision log as they are made;
//! - [`intents`]: the intents of logged decisions, counted for the access records over a flush
//!   interval;
//! - [`access_wire`]: the access records' summaries (GetAccessPatterns, ListActorAccess) in the
//!   protobuf wire format.
//!
//! The Python package hands this crate validated data (see crates/engine-py) and keeps the
//! services, the catalog, policy parsing and the decision log's files.

pub mod access_wire;
pub mod bits;
pub mod dataset_ids;
pub mod engine;
pub mod glob;
pub mod index;
pub mod intents;
pub mod log_entry;
mod memo;
mod pieces;
pub mod policy;
mod printable;
pub mod reason_texts;
pub mod symbols;
pub mod text;
pub mod unary;
pub mod wire;

pub use engine::{Engine, State};
pub use index::Change;
pub use memo::Judgement;
pub use policy::{CompiledPolicy, Operation, Outcome, Reason, ReasonCode, Verdict};

/// What the engine refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A policy document that does not hold together.
    Policy(String),
    /// A region the active policy's registry does not know, named by the request field.
    UnknownRegion { field: String, region: String },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Policy(message) => write!(f, "{message}"),
            Error::UnknownRegion { field, region } => {
                write!(f, "{field}: unknown region {} (see `domicile regions`)", text::py_repr(region))
            }
        }
    }
}

impl std::error::Error for Error {}
