//! ci-pod-webhook: a Kubernetes mutating admission webhook that applies runner-class
//! policy (resources, GPU placement, node Docker daemon) to GitLab CI job pods.
//!
//! The pieces, from the inside out:
//! - [`quantity`]: Kubernetes resource quantities, parsed and compared exactly;
//! - [`policy`]: the policy file, validated once into a [`policy::Policy`];
//! - [`mutate`]: the pure core, one AdmissionRequest in, one decision out;
//! - [`namespaces`]: namespace labels mirrored from the cluster by a watch;
//! - [`runtime_classes`]: the names of the cluster's RuntimeClasses, by a watch;
//! - [`admission`]: the AdmissionReview wire format around the core;
//! - [`server`]: the HTTPS webhook and admin ports, reload, shutdown;
//! - [`metrics`]: the Prometheus metrics value;
//! - [`certs`]: development and self-managed certificates;
//! - [`doctor`]: read-only checks of a cluster and an install;
//! - [`cli`]: the command line.

pub mod admission;
pub mod certs;
pub mod cli;
pub mod doctor;
pub mod explain;
pub mod metrics;
pub mod mutate;
pub mod namespaces;
pub mod policy;
pub mod quantity;
pub mod runtime_classes;
pub mod server;
