//! Can the webhook read what it needs? Its pods' ServiceAccount exists, its token is
//! mounted, `serve` is not told `--kube off`, and the API server lets the account do
//! each verb of [`crate::cluster::access::ALL`] (a SubjectAccessReview each, fetched in
//! [`super::fetch`]). In a pod without them `serve` stays not Ready and logs why; this
//! says so from outside, before anyone reads the pod's log.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodSpec, ServiceAccount};

use super::fetch::AccessAnswer;
use super::report::Check;
use crate::cluster::access;

pub const GROUP: &str = "webhook's cluster access";
/// Where the kubelet mounts the ServiceAccount token, and where `serve` reads it.
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const RBAC_FIX: &str =
    "kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md)";

/// The checks of the account `namespace/name` the Deployment's pods run as.
pub fn account(
    (namespace, name): &(String, String),
    service_account: Result<Option<&ServiceAccount>, &str>,
    deployment: Option<&Deployment>,
    answers: &[AccessAnswer],
) -> Vec<Check> {
    let who = format!("ServiceAccount {namespace}/{name}");
    let mut checks = Vec::new();
    let service_account = match service_account {
        Err(error) => {
            checks.push(Check::failure(GROUP, format!("cannot read {who}: {error}")).fix(RBAC_FIX));
            None
        }
        Ok(None) => {
            checks.push(
                Check::failure(GROUP, format!("{who} not found"))
                    .hint("the Deployment's pods cannot be created without it")
                    .fix("kubectl apply -k <your overlay> (manifests/base/rbac.yaml)"),
            );
            None
        }
        Ok(Some(account)) => Some(account),
    };
    let pod = deployment
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref());
    if let Some(pod) = pod {
        checks.extend(token(&who, pod, service_account));
        checks.extend(kube_off(pod));
    }
    checks.extend(permissions(&who, answers));
    checks
}

/// Whether the pods get the account's token where `serve` looks for it.
fn token(who: &str, pod: &PodSpec, account: Option<&ServiceAccount>) -> Option<Check> {
    // The pod's field wins over the account's; both unset means mounted.
    let (automount, set_on) = match (pod.automount_service_account_token, account) {
        (Some(value), _) => (value, "the Deployment's pod template"),
        (None, Some(a)) => (
            a.automount_service_account_token.unwrap_or(true),
            "the ServiceAccount",
        ),
        (None, None) => (true, ""),
    };
    if automount || mounts_token_by_hand(pod) {
        return Some(Check::ok(
            GROUP,
            format!("the webhook's pods mount the token of {who}"),
        ));
    }
    Some(
        Check::failure(
            GROUP,
            format!("the webhook's pods mount no token: automountServiceAccountToken is false on {set_on}"),
        )
        .hint("serve finds no cluster credentials in its pod: it stays not Ready and logs what is missing")
        .fix("set automountServiceAccountToken: true in the Deployment's pod template, as manifests/base/deployment.yaml does"),
    )
}

/// A projected volume with a ServiceAccount token mounted at the token directory: the
/// same credentials, mounted by hand.
fn mounts_token_by_hand(pod: &PodSpec) -> bool {
    let token_volumes: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .filter(|v| {
            v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.service_account_token.is_some())
            })
        })
        .map(|v| v.name.as_str())
        .collect();
    pod.containers.iter().any(|c| {
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == TOKEN_DIR && token_volumes.contains(&m.name.as_str()))
    })
}

/// `CI_POD_WEBHOOK_KUBE=off` in a container: `serve` then reads no namespace labels.
fn kube_off(pod: &PodSpec) -> Option<Check> {
    let off = pod.containers.iter().any(|c| {
        c.env
            .iter()
            .flatten()
            .any(|e| e.name == "CI_POD_WEBHOOK_KUBE" && e.value.as_deref() == Some("off"))
    });
    off.then(|| {
        Check::warning(
            GROUP,
            "serve runs with --kube off (CI_POD_WEBHOOK_KUBE=off)",
        )
        .hint("no namespace labels: a warn namespace is enforced and class labels are ignored")
        .fix("remove CI_POD_WEBHOOK_KUBE from the Deployment")
    })
}

/// One check per access the server needs: ✔ all verbs allowed; ✘ a required one
/// refused, ‼ an optional one.
fn permissions(who: &str, answers: &[AccessAnswer]) -> Vec<Check> {
    if let Some(error) = answers.iter().find_map(|a| a.allowed.as_ref().err()) {
        return vec![
            Check::failure(
                GROUP,
                format!("cannot ask the API server what {who} may do: {error}"),
            )
            .hint("the doctor asks with SubjectAccessReviews")
            .fix(RBAC_FIX),
        ];
    }
    let mut checks = Vec::new();
    for access in access::ALL {
        let refused: Vec<&str> = answers
            .iter()
            .filter(|a| a.access == access && a.allowed == Ok(false))
            .map(|a| a.verb)
            .collect();
        let asked = answers.iter().any(|a| a.access == access);
        if !asked {
            continue;
        }
        if refused.is_empty() {
            checks.push(Check::ok(GROUP, format!("{who} may {}", access.describe())));
            continue;
        }
        let message = format!(
            "{who} may not {} {}",
            refused.join(", "),
            access.resource_name()
        );
        let check = if access.required {
            Check::failure(GROUP, message)
        } else {
            Check::warning(GROUP, message)
        };
        checks.push(check.hint(access.without).fix(access::FIX));
    }
    checks
}

#[cfg(test)]
mod tests;
