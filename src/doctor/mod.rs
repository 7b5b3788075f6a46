//! `ci-pod-webhook doctor`: is this cluster ready for the webhook, and is the install
//! healthy? Read-only, in the spirit of `linkerd check`: one line per check (✔, ‼
//! warning, ✘ failure with a hint and the fixing command), grouped; exit code 1 on any
//! failure; `-o json` for scripts.
//!
//! The command (`cli/doctor.rs`) connects like kubectl and fetches every object once
//! ([`fetch::Snapshot`]); the checks are plain functions over the fetched objects
//! ([`checks`]), so each is a table test without a cluster. `--pre` runs only what makes
//! sense before installing: the policy, the nodes of each class, GPUs and RuntimeClasses,
//! namespaces and their Pod Security levels. `--install` runs only the install's own
//! checks (policy ConfigMap, webhook configuration, certificate, Deployment, Service and
//! endpoints, the webhook's account), so it can gate a deployment pipeline on a cluster
//! without GPU nodes or a node Docker daemon.

pub mod account;
pub mod certificate;
pub mod fetch;
pub mod install;
pub mod namespaces;
pub mod network;
pub mod placement;
pub mod report;
pub mod selector;
pub mod service;

use std::path::Path;

use time::OffsetDateTime;

pub use fetch::{Names, Snapshot};
pub use report::{Check, Report, Status};

use ci_pod_webhook_core::policy::Policy;

const POLICY_GROUP: &str = "policy";

/// Which checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything: is the cluster ready, and is the install healthy?
    All,
    /// `--pre`: only what makes sense before installing.
    Pre,
    /// `--install`: only the install's own checks, none about nodes, GPUs, namespaces or
    /// the node Docker daemon.
    Install,
}

/// What the checks are run with, besides the fetched objects.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub names: &'a Names,
    /// `--policy FILE`, read instead of the ConfigMap.
    pub policy_file: Option<&'a Path>,
    pub scope: Scope,
    pub now: OffsetDateTime,
}

/// The policy the other checks use, and the check that says where it came from.
fn policy(inputs: &Inputs<'_>, snapshot: &Snapshot) -> (Check, Option<Policy>) {
    let names = inputs.names;
    let where_ = format!("ConfigMap {}/{}", names.namespace, names.policy_config_map);
    let parsed = match (inputs.policy_file, &snapshot.policy_text) {
        (Some(path), _) => {
            crate::policy_file::load(path).map_err(|e| (path.display().to_string(), e))
        }
        (None, Ok(Some(text))) => Policy::parse(text, &where_).map_err(|e| (where_.clone(), e)),
        (None, Ok(None)) if inputs.scope == Scope::Pre => {
            let policy = Policy::embedded();
            let check = Check::ok(
                POLICY_GROUP,
                format!(
                    "no {where_} yet: checking the embedded default policy (hash {}), which manifests/base installs",
                    policy.hash
                ),
            )
            .hint("pass --policy FILE to check the policy you will install");
            return (check, Some(policy));
        }
        (None, Ok(None)) => {
            let check = Check::failure(
                POLICY_GROUP,
                format!("{where_} (key {}) not found", names.policy_key),
            )
            .hint("the webhook cannot start without its policy; the checks below use the embedded default")
            .fix("kubectl apply -k <your overlay> (docs/deploy.md)");
            return (check, Some(Policy::embedded()));
        }
        (None, Err(error)) => {
            let check = Check::failure(POLICY_GROUP, format!("cannot read {where_}: {error}"))
                .hint("the checks below use the embedded default policy")
                .fix("kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md), or pass --policy FILE");
            return (check, Some(Policy::embedded()));
        }
    };
    match parsed {
        Ok(policy) => {
            let check = Check::ok(
                POLICY_GROUP,
                format!(
                    "policy {} is valid (hash {}, {} classes, prefix {})",
                    policy.origin,
                    policy.hash,
                    policy.classes.len(),
                    policy.prefix
                ),
            );
            (check, Some(policy))
        }
        Err((origin, error)) => {
            let problems = error.to_string().replace('\n', "; ");
            let check = Check::failure(POLICY_GROUP, format!("policy {origin} is invalid: {problems}"))
                .hint("the webhook refuses it and keeps the last good policy; the checks that need a policy are skipped")
                .fix(format!("ci-pod-webhook check-policy FILE, then update the {where_}"));
            (check, None)
        }
    }
}

/// Every check over one snapshot of the cluster.
pub fn checks(inputs: &Inputs<'_>, snapshot: &Snapshot) -> Report {
    let names = inputs.names;
    let (policy_check, policy) = policy(inputs, snapshot);
    let mut checks = vec![policy_check];
    let Some(policy) = policy else {
        return Report { checks };
    };
    // What a job could turn against a valid policy (check-policy prints the same), such
    // as ephemeralContainers: allow, a safe default turned off.
    checks.extend(
        policy
            .warnings()
            .into_iter()
            .map(|w| Check::warning(POLICY_GROUP, w)),
    );
    let namespaces = snapshot.namespaces.as_deref().map_err(String::as_str);
    if inputs.scope != Scope::Install {
        checks.extend(cluster_readiness(&policy, snapshot, namespaces));
    }
    if inputs.scope == Scope::Pre {
        // A host daemon's socket needs nothing installed: say so before installing.
        checks.extend(placement::host_daemon(&policy, None));
        return Report { checks };
    }
    checks.extend(install(&policy, names, snapshot, namespaces, inputs.now));
    if inputs.scope == Scope::All
        && let Ok(nodes) = &snapshot.nodes
    {
        checks.extend(placement::docker_daemon(
            &policy,
            nodes,
            snapshot
                .daemon_set
                .as_ref()
                .map(Option::as_ref)
                .map_err(String::as_str),
            &format!("{}/{}", names.docker_namespace, names.docker_daemon_set),
        ));
    }
    Report { checks }
}

/// Is the cluster ready for the policy: the nodes of each class, GPUs, RuntimeClasses,
/// namespaces.
fn cluster_readiness(
    policy: &Policy,
    snapshot: &Snapshot,
    namespaces: Result<&[k8s_openapi::api::core::v1::Namespace], &str>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    match &snapshot.nodes {
        Ok(nodes) => {
            let runtime_classes = snapshot.runtime_classes.as_deref().map_err(String::as_str);
            checks.extend(placement::classes(policy, nodes, runtime_classes));
        }
        Err(error) => {
            checks.push(
                Check::failure(placement::GROUP, format!("cannot list nodes: {error}"))
                    .fix("kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md)"),
            );
        }
    }
    checks.extend(namespaces::namespaces(policy, namespaces));
    checks
}

/// Is the install healthy: the webhook configuration, the certificate, the Deployment,
/// the Service and its endpoints, the webhook's account.
fn install(
    policy: &Policy,
    names: &Names,
    snapshot: &Snapshot,
    namespaces: Result<&[k8s_openapi::api::core::v1::Namespace], &str>,
    now: OffsetDateTime,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let configuration = snapshot.webhook_configuration.as_ref().map(Option::as_ref);
    checks.extend(install::configuration(
        policy,
        &names.webhook_configuration,
        configuration.map_err(String::as_str),
        namespaces.unwrap_or_default(),
    ));
    let entry = configuration.ok().flatten().and_then(install::job_entry);
    let hosts = install::dialled_hosts(
        configuration.ok().flatten(),
        &format!("{}.{}.svc", names.deployment, names.namespace),
    );
    let ca_bundle = entry
        .and_then(|e| e.client_config.ca_bundle.as_ref())
        .map(|b| b.0.as_slice());
    checks.extend(certificate::certificate(
        &format!("{}/{}", names.namespace, names.tls_secret),
        snapshot
            .tls_secret
            .as_ref()
            .map(Option::as_ref)
            .map_err(String::as_str),
        ca_bundle,
        &hosts,
        now,
    ));
    let deployment = snapshot
        .deployment
        .as_ref()
        .map(Option::as_ref)
        .map_err(String::as_str);
    checks.extend(install::deployment(
        &format!("{}/{}", names.namespace, names.deployment),
        deployment,
    ));
    let deployment = deployment.ok().flatten();
    if let Some(installed) = deployment {
        checks.push(network::trusted_peers(
            &format!("{}/{}", names.namespace, names.deployment),
            installed,
        ));
    }
    if let Some(dialled) = entry.and_then(service::Dialled::of) {
        checks.extend(service::service(
            &dialled,
            snapshot
                .service
                .as_ref()
                .map(Option::as_ref)
                .map_err(String::as_str),
            deployment,
            snapshot.endpoint_slices.as_deref().map_err(String::as_str),
        ));
    }
    checks.extend(account::account(
        &snapshot.account,
        snapshot
            .service_account
            .as_ref()
            .map(Option::as_ref)
            .map_err(String::as_str),
        deployment,
        &snapshot.access,
    ));
    checks
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod test_support;
