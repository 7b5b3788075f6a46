//! What the webhook's ServiceAccount must be allowed to read: one entry per watch.
//!
//! One list, three readers: a watch the API server refuses names its entry in the log
//! line that says how to fix it; `doctor` asks a SubjectAccessReview for each verb of
//! each entry; and a test holds `manifests/base/rbac.yaml`'s ClusterRole to it, so the
//! manifests, the server and the doctor cannot drift apart.

/// The access one watch needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The API group (`""` for the core group).
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// Whether the webhook is Ready without it. Only the namespace watch is required:
    /// reviews cannot do without namespace labels, while the other watches only add a
    /// check or feed a metric (and an older ClusterRole may lack them).
    pub required: bool,
    /// What the webhook does without it, for the log line and the doctor's hint.
    pub without: &'static str,
}

/// Namespace labels: the opt-in label, a pinned class, the Pod Security level.
pub const NAMESPACES: Access = Access {
    group: "",
    resource: "namespaces",
    verbs: &["get", "list", "watch"],
    required: true,
    without: "no namespace labels: the webhook is not Ready",
};

/// RuntimeClass names, so a GPU class's missing RuntimeClass is denied with a reason.
pub const RUNTIME_CLASSES: Access = Access {
    group: "node.k8s.io",
    resource: "runtimeclasses",
    verbs: &["list", "watch"],
    required: false,
    without: "GPU pods are not checked for a missing RuntimeClass",
};

/// Job pods, judged for `ci_pod_webhook_job_pods`.
pub const JOB_PODS: Access = Access {
    group: "",
    resource: "pods",
    verbs: &["list", "watch"],
    required: false,
    without: "ci_pod_webhook_job_pods stays empty and the alerts on it stay quiet",
};

/// Everything the server reads, in the order it starts the watches.
pub const ALL: [Access; 3] = [NAMESPACES, RUNTIME_CLASSES, JOB_PODS];

/// How to grant it: what manifests/base ships.
pub const FIX: &str = "apply ClusterRole and ClusterRoleBinding ci-pod-webhook of \
     manifests/base/rbac.yaml to the webhook's ServiceAccount (kubectl apply -k <your overlay>)";

impl Access {
    /// `namespaces` or `runtimeclasses.node.k8s.io`, as `kubectl auth can-i` takes it.
    #[must_use]
    pub fn resource_name(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `get, list and watch on namespaces`.
    #[must_use]
    pub fn describe(&self) -> String {
        let verbs = match self.verbs {
            [] => String::new(),
            [one] => (*one).to_string(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        };
        format!("{verbs} on {}", self.resource_name())
    }
}

#[cfg(test)]
mod tests;
