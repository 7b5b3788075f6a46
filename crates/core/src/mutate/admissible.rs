//! Changes the API server would refuse: the webhook must never turn a pod it could
//! admit into one that is refused after the patch (under `failurePolicy: Ignore` too,
//! since the refusal comes from later admission steps, not from the webhook).
//!
//! Two facts about the cluster decide it, both passed in so the core stays pure:
//! - **Pod Security Admission.** A namespace labelled
//!   `pod-security.kubernetes.io/enforce=baseline` or `restricted` refuses hostPath
//!   volumes (at every `enforce-version`: hostPath has been outside `baseline` since the
//!   first version of the standards). Socket mode adds one, so there the Docker change
//!   is *skipped* with a warning: the rest of the job works, and only a job that uses
//!   Docker fails, saying it cannot reach a daemon. `privileged`, or no label (the
//!   cluster-wide default, which a webhook cannot see), keeps the change. An unreadable
//!   level counts as `restricted`, as Pod Security Admission itself does.
//! - **RuntimeClasses.** A GPU class whose `runtimeClassName` names a RuntimeClass the
//!   cluster lacks makes the API server refuse the pod (`RuntimeClass "nvidia" not
//!   found`). The pod is *denied* with a message for the admin: dropping the runtime
//!   class instead would let the pod run on a GPU node without the NVIDIA runtime, where
//!   the job may pass without ever seeing a GPU.
//!
//! Unknown facts (no cluster access, a watch not yet synced) change nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::docker;
use super::patch::Patch;
use super::view::Pod;
use super::{NamespaceFacts, RefusedChange};
use crate::policy::{DockerMode, GPU_WORKLOADS_CLASS, Policy, RunnerClass};

/// The namespace label Pod Security Admission enforces.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodSecurityLevel {
    Privileged,
    Baseline,
    Restricted,
}

impl PodSecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        }
    }

    /// Whether pods at this level may have hostPath volumes.
    pub fn allows_host_path(self) -> bool {
        self == PodSecurityLevel::Privileged
    }
}

/// The level a namespace's labels enforce; `None` when the label is absent (the
/// cluster's default applies, which is `privileged` unless an AdmissionConfiguration
/// says otherwise). A value Pod Security Admission cannot parse counts as `restricted`,
/// as it does.
pub fn enforced_level(labels: &BTreeMap<String, String>) -> Option<PodSecurityLevel> {
    labels
        .get(POD_SECURITY_ENFORCE)
        .map(|value| match value.as_str() {
            "privileged" => PodSecurityLevel::Privileged,
            "baseline" => PodSecurityLevel::Baseline,
            _ => PodSecurityLevel::Restricted,
        })
}

/// Which RuntimeClasses exist in the cluster.
#[derive(Debug, Clone, Copy, Default)]
pub enum RuntimeClassFacts<'a> {
    /// Not known (no cluster access, or the watch has not listed them yet).
    #[default]
    Unknown,
    /// The names of every RuntimeClass in the cluster.
    Known(&'a BTreeSet<String>),
}

impl<'a> From<Option<&'a BTreeSet<String>>> for RuntimeClassFacts<'a> {
    fn from(names: Option<&'a BTreeSet<String>>) -> Self {
        names.map_or(RuntimeClassFacts::Unknown, RuntimeClassFacts::Known)
    }
}

/// The runtime class `class` needs and the cluster is known to lack.
pub(super) fn missing_runtime_class<'c>(
    class: &'c RunnerClass,
    runtime_classes: RuntimeClassFacts<'_>,
) -> Option<&'c str> {
    let want = class.gpu.as_ref()?.runtime_class_name.as_deref()?;
    match runtime_classes {
        RuntimeClassFacts::Known(names) if !names.contains(want) => Some(want),
        _ => None,
    }
}

/// The admin-facing denial for a missing RuntimeClass.
pub(super) fn missing_runtime_class_message(class: &RunnerClass, name: &str) -> String {
    let (who, key) = if class.name == GPU_WORKLOADS_CLASS {
        ("gpuWorkloads".to_string(), "gpuWorkloads.runtimeClassName")
    } else {
        (format!("class {}", class.name), "gpu.runtimeClassName")
    };
    format!(
        "{who} needs RuntimeClass {name:?} ({key} in the policy), \
         which does not exist in this cluster, so the API server would refuse the pod; \
         an admin must create it (the NVIDIA GPU Operator does) or remove runtimeClassName \
         from {who} (run `ci-pod-webhook doctor` to check)"
    )
}

/// Applies the Docker change unless the namespace's Pod Security level would refuse
/// the hostPath volume it adds; then nothing of it is applied and a warning says why.
pub(super) fn docker(
    policy: &Policy,
    namespace: NamespaceFacts<'_>,
    pod: &Pod<'_>,
    patch: &mut Patch,
    warnings: &mut Vec<String>,
    refused: &mut Vec<RefusedChange>,
) {
    let level = match namespace {
        NamespaceFacts::Labels(labels)
            if matches!(policy.docker.mode, DockerMode::Socket { .. }) =>
        {
            enforced_level(labels).filter(|l| !l.allows_host_path())
        }
        _ => None,
    };
    let Some(level) = level else {
        docker::apply(policy, pod, patch, warnings);
        return;
    };
    let mut wanted = Patch::default();
    docker::apply(policy, pod, &mut wanted, &mut Vec::new());
    if wanted.is_empty() {
        return;
    }
    refused.push(RefusedChange::DockerSocket);
    warnings.push(format!(
        "Docker not configured: the namespace enforces Pod Security {level:?}, which refuses \
         the hostPath volume of the node Docker socket; an admin can label the namespace \
         {POD_SECURITY_ENFORCE}=privileged or set docker.mode: tcp in the policy",
        level = level.as_str()
    ));
}

#[cfg(test)]
mod tests;
