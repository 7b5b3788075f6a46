//! Is the install healthy? The MutatingWebhookConfiguration (present, failurePolicy,
//! timeout, namespaceSelector against the policy's opt-in label), and the webhook
//! Deployment's ready replicas. The serving certificate is in `certificate`.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;

use super::namespaces::OPT_IN_VALUES;
use super::report::Check;
use super::selector::selects;
use ci_pod_webhook_core::policy::{OPT_IN_VALUE, Policy};

pub const GROUP: &str = "webhook";
/// The label the API server sets on every namespace (Kubernetes >= 1.21).
const NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Above this, a stuck webhook delays every pod creation noticeably.
const MAX_TIMEOUT_SECONDS: i32 = 5;
const RBAC_FIX: &str =
    "kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md)";
const INSTALL_FIX: &str = "kubectl apply -k <your overlay> (docs/deploy.md)";

/// The webhook entry job pods go through: the first one (the base has one; later
/// entries, such as one for GPU workloads, come after it).
pub fn job_entry(configuration: &MutatingWebhookConfiguration) -> Option<&MutatingWebhook> {
    configuration.webhooks.as_ref()?.first()
}

/// The hosts the API server dials for the configuration's entries, each once, in
/// order: a `clientConfig.url`'s host (a name or an IP address), or
/// `<service>.<namespace>.svc` for a `clientConfig.service`; `fallback` when there are
/// no entries.
pub fn dialled_hosts(
    configuration: Option<&MutatingWebhookConfiguration>,
    fallback: &str,
) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for entry in configuration
        .and_then(|c| c.webhooks.as_ref())
        .into_iter()
        .flatten()
    {
        let config = &entry.client_config;
        let host = match (&config.url, &config.service) {
            (Some(url), _) => url_host(url),
            (None, Some(service)) => Some(format!("{}.{}.svc", service.name, service.namespace)),
            (None, None) => None,
        };
        if let Some(host) = host.filter(|h| !hosts.contains(h)) {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        hosts.push(fallback.to_string());
    }
    hosts
}

/// The host of `https://host[:port]/path`; an IPv6 address without its brackets.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// Checks of the MutatingWebhookConfiguration named `name`.
pub fn configuration(
    policy: &Policy,
    name: &str,
    configuration: Result<Option<&MutatingWebhookConfiguration>, &str>,
    namespaces: &[Namespace],
) -> Vec<Check> {
    let configuration = match configuration {
        Err(error) => {
            return vec![
                Check::failure(
                    GROUP,
                    format!("cannot read MutatingWebhookConfiguration {name}: {error}"),
                )
                .fix(RBAC_FIX),
            ];
        }
        Ok(None) => {
            return vec![
                Check::failure(
                    GROUP,
                    format!("MutatingWebhookConfiguration {name} not found"),
                )
                .hint("the API server never calls the webhook: no pod is changed")
                .fix(INSTALL_FIX),
            ];
        }
        Ok(Some(c)) => c,
    };
    let Some(entry) = job_entry(configuration) else {
        return vec![
            Check::failure(
                GROUP,
                format!("MutatingWebhookConfiguration {name} has no webhooks"),
            )
            .fix(INSTALL_FIX),
        ];
    };
    let mut checks = vec![Check::ok(
        GROUP,
        format!(
            "MutatingWebhookConfiguration {name} present (webhook {})",
            entry.name
        ),
    )];
    checks.push(match entry.failure_policy.as_deref().unwrap_or("Fail") {
        "Ignore" => Check::ok(
            GROUP,
            "failurePolicy Ignore: while the webhook is unreachable, job pods are created without the policy",
        ),
        other => Check::ok(
            GROUP,
            format!("failurePolicy {other}: while the webhook is unreachable, no job pod can be created"),
        ),
    });
    let timeout = entry.timeout_seconds.unwrap_or(10);
    checks.push(if timeout > MAX_TIMEOUT_SECONDS {
        Check::warning(GROUP, format!("timeoutSeconds {timeout}"))
            .hint(format!("a stuck webhook delays each pod creation by up to {timeout} s"))
            .fix(format!(
                "kubectl patch mutatingwebhookconfiguration {name} --type=json -p '[{{\"op\":\"replace\",\"path\":\"/webhooks/0/timeoutSeconds\",\"value\":3}}]'"
            ))
    } else {
        Check::ok(GROUP, format!("timeoutSeconds {timeout}"))
    });
    checks.extend(selector(policy, entry, namespaces));
    checks.extend(gpu_entry_conditions(policy, configuration));
    if entry.client_config.ca_bundle.is_none() {
        checks.push(
            Check::failure(GROUP, "clientConfig has no caBundle")
                .hint("the API server cannot verify the webhook: every call fails (and fails open under Ignore)")
                .fix("cert-manager overlay: check the cert-manager.io/inject-ca-from annotation; self-managed: re-apply your kustomization"),
        );
    }
    checks
}

fn selector(policy: &Policy, entry: &MutatingWebhook, namespaces: &[Namespace]) -> Vec<Check> {
    let opt_in = &policy.keys.opt_in;
    let selector = entry.namespace_selector.as_ref();
    let probe = |labels: &[(&str, &str)]| {
        let mut map: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        map.insert(NAME_LABEL.into(), "ci-pod-webhook-doctor-probe".into());
        selects(selector, &map)
    };
    let mut checks = Vec::new();
    if probe(&[(opt_in, OPT_IN_VALUE)]) {
        checks.push(Check::ok(
            GROUP,
            format!("namespaceSelector selects namespaces labelled {opt_in}={OPT_IN_VALUE}"),
        ));
    } else {
        checks.push(
            Check::failure(
                GROUP,
                format!("namespaceSelector does not select namespaces labelled {opt_in}={OPT_IN_VALUE}, the policy's opt-in label"),
            )
            .hint("job pods of opted-in namespaces never reach the webhook (a policy prefix changed without the webhook configuration?)")
            .fix(format!("make the namespaceSelector require {opt_in} In [{}] (manifests/base/mutatingwebhookconfiguration.yaml)", OPT_IN_VALUES.join(", "))),
        );
    }
    if probe(&[]) {
        checks.push(
            Check::warning(GROUP, format!("namespaceSelector also selects namespaces without {opt_in}"))
                .hint("every pod creation in those namespaces waits on the webhook, which changes nothing there")
                .fix(format!("make the namespaceSelector require {opt_in}")),
        );
    }
    let missed: Vec<&str> = namespaces
        .iter()
        .filter(|ns| {
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            labels
                .get(opt_in)
                .is_some_and(|v| OPT_IN_VALUES.contains(&v.as_str()))
                && !selects(selector, &labels)
        })
        .filter_map(|ns| ns.metadata.name.as_deref())
        .collect();
    if !missed.is_empty() {
        checks.push(
            Check::failure(
                GROUP,
                format!(
                    "namespaceSelector does not select opted-in namespace(s) {}",
                    missed.join(", ")
                ),
            )
            .hint("their job pods never reach the webhook")
            .fix(format!(
                "make the namespaceSelector accept {opt_in} In [{}]",
                OPT_IN_VALUES.join(", ")
            )),
        );
    }
    checks
}

/// The path of the GPU workloads entry (`server::webhook::GPU_WORKLOADS_PATH`).
const GPU_WORKLOADS_PATH: &str = "/mutate/gpu-workloads";

/// The GPU workloads entry's matchConditions against the policy's
/// `gpuWorkloads.resources` (issue 25, point 8): a pod asking only for a resource the
/// conditions do not look for never reaches the webhook, and runs unplaced. The
/// conditions are static YAML that cannot be rendered from the policy, so they are
/// checked against it here. An entry without matchConditions sends every pod (the
/// 1.26-1.29 component): nothing to check.
pub fn gpu_entry_conditions(
    policy: &Policy,
    configuration: &MutatingWebhookConfiguration,
) -> Vec<Check> {
    let Some(gpu) = &policy.gpu_workloads else {
        return Vec::new();
    };
    let entry = configuration.webhooks.iter().flatten().find(|w| {
        w.client_config
            .service
            .as_ref()
            .and_then(|s| s.path.as_deref())
            .or(w.client_config.url.as_deref())
            .is_some_and(|p| p.ends_with(GPU_WORKLOADS_PATH))
    });
    let Some(entry) = entry else {
        return Vec::new();
    };
    let Some(conditions) = entry.match_conditions.as_deref().filter(|c| !c.is_empty()) else {
        return Vec::new();
    };
    let expressions: Vec<&str> = conditions.iter().map(|c| c.expression.as_str()).collect();
    let missing: Vec<&str> = gpu
        .missing_from_conditions(&expressions)
        .iter()
        .map(|r| r.as_str())
        .collect();
    if missing.is_empty() {
        return vec![Check::ok(
            GROUP,
            format!(
                "webhook {}: matchConditions look for every gpuWorkloads resource",
                entry.name
            ),
        )];
    }
    vec![
        Check::failure(
            GROUP,
            format!(
                "webhook {}: matchConditions do not look for gpuWorkloads resource(s) {}",
                entry.name,
                missing.join(", ")
            ),
        )
        .hint("pods asking only for those never reach the webhook: they run without the GPU placement and keep the NVIDIA toolkit's variables")
        .fix("name each in the asks-for-a-gpu condition, r == 'name' or r.startsWith('prefix') (manifests/base/mutatingwebhookconfiguration.yaml), or remove it from the policy"),
    ]
}

/// The webhook Deployment's ready replicas.
pub fn deployment(where_: &str, deployment: Result<Option<&Deployment>, &str>) -> Vec<Check> {
    let deployment = match deployment {
        Err(error) => {
            return vec![
                Check::failure(GROUP, format!("cannot read Deployment {where_}: {error}"))
                    .fix(RBAC_FIX),
            ];
        }
        Ok(None) => {
            return vec![
                Check::failure(GROUP, format!("Deployment {where_} not found"))
                    .hint("nothing answers the API server's calls")
                    .fix(INSTALL_FIX),
            ];
        }
        Ok(Some(d)) => d,
    };
    let want = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let namespace = deployment
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("ci-pod-webhook");
    let name = deployment
        .metadata
        .name
        .as_deref()
        .unwrap_or("ci-pod-webhook");
    let look = format!(
        "kubectl -n {namespace} describe deployment {name}; kubectl -n {namespace} logs deployment/{name}"
    );
    let mut checks = vec![if ready == 0 {
        Check::failure(GROUP, format!("Deployment {where_}: no ready replica (of {want})"))
            .hint("the API server cannot reach the webhook: job pods are created without the policy (failurePolicy Ignore) or not at all (Fail)")
            .fix(look)
    } else if ready < want {
        Check::warning(
            GROUP,
            format!("Deployment {where_}: {ready} of {want} replicas ready"),
        )
        .fix(look)
    } else {
        Check::ok(
            GROUP,
            format!("Deployment {where_}: {ready} of {want} replicas ready"),
        )
    }];
    if want < 2 {
        checks.push(
            Check::warning(GROUP, format!("Deployment {where_}: {want} replica(s)"))
                .hint("a node drain or a rollout leaves no webhook for a moment")
                .fix(format!(
                    "kubectl -n {namespace} scale deployment {name} --replicas=2"
                )),
        );
    }
    checks
}

#[cfg(test)]
mod tests;
