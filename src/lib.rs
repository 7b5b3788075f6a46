//! ci-pod-webhook: a Kubernetes mutating admission webhook that applies runner-class
//! policy (resources, GPU placement, node Docker daemon) to GitLab CI job pods.
//!
//! The pieces, from the inside out:
//! - [`quantity`]: Kubernetes resource quantities, parsed and compared exactly;
//! - [`policy`]: the policy file, validated once into a [`policy::Policy`];
//! - [`mutate`]: the pure core, one AdmissionRequest in, one decision out;
//! - [`cluster`]: the webhook's view of the cluster: namespace labels, RuntimeClass
//!   names and job pods, mirrored by watches;
//! - [`enforcement`]: warn mode, a layer over the core's decision;
//! - [`admission`]: the AdmissionReview wire format around the core;
//! - [`server`]: the HTTPS webhook and admin ports, reload, shutdown;
//! - [`metrics`]: the Prometheus metrics value;
//! - [`certs`]: development and self-managed certificates;
//! - [`doctor`]: read-only checks of a cluster and an install;
//! - [`audit`]: the `audit` command, job pods that exist now judged by the policy;
//! - [`cli`]: the command line.

pub mod admission;
pub mod audit;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod doctor;
pub mod enforcement;
pub mod explain;
pub mod metrics;
pub mod mutate;
pub mod policy;
pub mod quantity;
pub mod server;
