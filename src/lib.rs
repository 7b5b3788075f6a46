//! ci-pod-webhook: a Kubernetes mutating admission webhook that applies runner-class
//! policy (resources, GPU placement, node Docker daemon) to GitLab CI job pods.
//!
//! The pure core (quantities, the policy, the decision, the answer and its wire format,
//! warn mode, explanations) is its own crate, [`ci_pod_webhook_core`], which Cargo keeps
//! free of I/O. This crate is the shell around it, in layers that only import downwards
//! (docs/development.md):
//! - [`policy_file`]: the policy read from disk;
//! - [`metrics`]: the Prometheus metrics value;
//! - [`trusted_peers`]: the API server's source addresses (`--trusted-peers`), as the
//!   server and `doctor` read them;
//! - [`cluster`]: the webhook's view of the cluster: namespace labels, RuntimeClass
//!   names and job pods, mirrored by watches, and the judging of stored pods;
//! - [`certs`]: development and self-managed certificates;
//! - [`prometheus`]: a client of Prometheus' HTTP API (instant queries);
//! - [`server`]: the HTTPS webhook and admin ports, reload, shutdown;
//! - [`doctor`]: read-only checks of a cluster and an install;
//! - [`sizing`]: job pods' usage per class from Prometheus, against the policy's limits;
//! - [`cli`]: the commands (`serve`, `mutate`, `audit`, `doctor`, `certs`, …), each
//!   with its arguments: the top layer.

pub mod certs;
pub mod cli;
pub mod cluster;
pub mod doctor;
pub mod metrics;
pub mod policy_file;
pub mod prometheus;
pub mod server;
pub mod sizing;
pub mod trusted_peers;
