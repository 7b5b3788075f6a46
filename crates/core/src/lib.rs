//! The pure core of ci-pod-webhook: a synchronous function of (policy, facts about the
//! cluster, AdmissionReview) to an answer, with no I/O, no clock and no globals. Cargo
//! keeps it so: this crate depends on nothing that could do I/O (no kube, tokio, hyper,
//! rustls, tracing), and it never touches the file system.
//!
//! The pieces, from the inside out:
//! - [`quantity`]: Kubernetes resource quantities, parsed and compared exactly;
//! - [`policy`]: the policy text, validated once into a [`policy::Policy`];
//! - [`mutate`]: one AdmissionRequest and the facts about its namespace in, one
//!   [`mutate::Decision`] out;
//! - [`enforcement`]: the mode a decision is answered in (enforce or warn);
//! - [`answer`]: a decision and a mode made into the answer model (allowed, patch,
//!   warnings, audit annotations, status, outcome), the one place that does it;
//! - [`admission`]: the AdmissionReview v1 wire format: bytes in, the answer out;
//! - [`explain`]: human-readable explanations of a decision.

pub mod admission;
pub mod answer;
pub mod enforcement;
pub mod explain;
pub mod mutate;
pub mod policy;
pub mod quantity;

#[cfg(test)]
mod tests;
