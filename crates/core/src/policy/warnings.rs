//! Policy footguns: valid policies that a job author can turn against their class.
//! `check-policy` prints them and `serve` logs them on every load; they are warnings,
//! not errors, because each can be a knowing choice.

use super::{EphemeralContainers, Policy, TolerationOperator};

/// The label domain GitLab Runner keeps for itself: a job cannot overwrite a label
/// whose key prefix is `runner.gitlab.com` or ends in `.runner.gitlab.com`.
const RUNNER_LABEL_DOMAIN: &str = "runner.gitlab.com";

impl Policy {
    /// What is risky about this policy, one sentence each, naming the key.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for class in &self.classes {
            let n = &class.name;
            let pod_label_keys = class.match_blocks.iter().flat_map(|b| b.pod_labels.keys());
            for key in pod_label_keys {
                if !runner_owned(key) {
                    out.push(format!(
                        "classes.{n}.match.podLabels.{key}: a job can set this label (KUBERNETES_POD_LABELS_* where the runner allows pod_labels_overwrite_allowed, and job labels win over the runner's pod_labels), and so choose class {n}; match on a key under {RUNNER_LABEL_DOMAIN}, the runner name, the service account or the namespace instead"
                    ));
                } else {
                    // GitLab Runner protects these keys from 17.9 only; `runnerNames`
                    // also checks the id-short against the pod's name, podLabels cannot.
                    out.push(format!(
                        "classes.{n}.match.podLabels.{key}: GitLab Runner keeps labels under {RUNNER_LABEL_DOMAIN} from jobs only from 17.9; on older runners that allow pod_labels_overwrite_allowed a job can set this one, and so choose class {n}; for the runner name use runnerNames (it also checks manager.runner.gitlab.com/id-short against the pod's name), and match older runners by runnerTokens or serviceAccounts (docs/matching.md)"
                    ));
                }
            }
            let tokens = class.match_blocks.iter().flat_map(|b| &b.runner_tokens);
            for token in tokens.filter(|t| is_placeholder(t)) {
                out.push(format!(
                    "classes.{n}.match.runnerTokens: {token} is a placeholder, not a runner's token (an example policy left unedited?): no job pod's name starts with runner-{token}-, so this rule matches nothing; put the runner's short token (docs/ska-migration.md, \"1. Fill in the policy\")"
                ));
            }
            if class
                .tolerations
                .iter()
                .any(|t| t.key.is_empty() && t.operator == TolerationOperator::Exists)
            {
                out.push(format!(
                    "classes.{n}: a toleration with operator Exists and no key (from ciNodes.tolerations, the class or its gpu) tolerates every taint: the class's job pods may run on any node, including control-plane, GPU and other reserved nodes; name the taint key"
                ));
            }
        }
        if self.ephemeral_containers == EphemeralContainers::Allow {
            out.push("ephemeralContainers: allow: an ephemeral container added to a job pod (kubectl debug, pods/ephemeralcontainers) is not reviewed: whoever may add one can run a privileged container with the node's GPUs, the pod's Docker socket and hostPath volumes beside the job; use restricted (the default) or deny".to_string());
        }
        let default = &self.classes[self.default_class];
        if default.gpu.is_some() {
            out.push(format!(
                "defaultClass: {} is a GPU class: every job pod no class matches (any runner not listed, any runner older than 17.9) gets GPUs; make a class without GPUs the default",
                default.name
            ));
        }
        out
    }
}

/// The example policies' placeholder tokens: `todo` and digits (`todo0101`).
fn is_placeholder(token: &str) -> bool {
    token
        .strip_prefix("todo")
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// Whether GitLab Runner keeps the label key to itself.
fn runner_owned(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return false;
    };
    prefix == RUNNER_LABEL_DOMAIN
        || prefix
            .strip_suffix(RUNNER_LABEL_DOMAIN)
            .is_some_and(|p| p.ends_with('.'))
}

#[cfg(test)]
mod tests;
