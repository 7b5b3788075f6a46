use k8s_openapi::api::admissionregistration::v1::{ServiceReference, WebhookClientConfig};
use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use super::*;
use crate::doctor::report::Status;
use crate::doctor::test_support::named;

/// The webhook as manifests/base configures it.
fn base_entry() -> MutatingWebhook {
    MutatingWebhook {
        name: "pods.ci-pod-webhook.ci.skao.int".into(),
        admission_review_versions: vec!["v1".into()],
        client_config: WebhookClientConfig {
            ca_bundle: Some(k8s_openapi::ByteString(
                b"-----BEGIN CERTIFICATE-----".to_vec(),
            )),
            service: Some(ServiceReference {
                name: "ci-pod-webhook".into(),
                namespace: "ci-pod-webhook".into(),
                path: Some("/mutate".into()),
                port: Some(443),
            }),
            url: None,
        },
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "ci.skao.int/pod-policy".into(),
                    operator: "In".into(),
                    values: Some(vec!["enabled".into()]),
                },
                LabelSelectorRequirement {
                    key: NAME_LABEL.into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["kube-system".into(), "ci-pod-webhook".into()]),
                },
            ]),
            match_labels: None,
        }),
        failure_policy: Some("Ignore".into()),
        timeout_seconds: Some(3),
        side_effects: "None".into(),
        ..MutatingWebhook::default()
    }
}

fn configuration_of(entry: MutatingWebhook) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some("ci-pod-webhook".into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![entry]),
    }
}

fn ns(name: &str, value: &str) -> Namespace {
    Namespace {
        metadata: named(
            name,
            &[("ci.skao.int/pod-policy", value), (NAME_LABEL, name)],
        ),
        ..Namespace::default()
    }
}

/// The configuration checks when `entry` is the configuration's only webhook.
fn entry_checks(policy: &Policy, entry: MutatingWebhook, namespaces: &[Namespace]) -> Vec<Check> {
    let config = configuration_of(entry);
    configuration(policy, "ci-pod-webhook", Ok(Some(&config)), namespaces)
}

fn not_ok(checks: &[Check]) -> Vec<(Status, &str)> {
    checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .map(|c| (c.status, c.message.as_str()))
        .collect()
}

#[test]
fn the_base_configuration_passes() {
    let policy = Policy::embedded();
    let checks = entry_checks(&policy, base_entry(), &[ns("gitlab", "enabled")]);
    assert_eq!(not_ok(&checks), []);
    assert_eq!(checks.len(), 4, "{checks:#?}");
}

#[test]
fn a_missing_or_unreadable_configuration_fails() {
    let policy = Policy::embedded();
    let missing = configuration(&policy, "ci-pod-webhook", Ok(None), &[]);
    assert_eq!(
        not_ok(&missing),
        [(
            Status::Failure,
            "MutatingWebhookConfiguration ci-pod-webhook not found"
        )]
    );
    let forbidden = configuration(&policy, "ci-pod-webhook", Err("forbidden"), &[]);
    assert_eq!(forbidden[0].status, Status::Failure);
    assert!(
        forbidden[0]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("manifests/doctor"))
    );
}

#[test]
fn a_long_timeout_warns_and_no_ca_bundle_fails() {
    let policy = Policy::embedded();
    let mut entry = base_entry();
    entry.timeout_seconds = None; // the API server's default, 10 s
    entry.client_config.ca_bundle = None;
    let checks = entry_checks(&policy, entry, &[]);
    assert_eq!(
        not_ok(&checks),
        [
            (Status::Warning, "timeoutSeconds 10"),
            (Status::Failure, "clientConfig has no caBundle")
        ]
    );
}

#[test]
fn a_selector_on_another_label_misses_the_policys_opt_in() {
    let policy = Policy::parse(
        &ci_pod_webhook_core::policy::DEFAULT_POLICY_YAML
            .replace("prefix: ci.skao.int", "prefix: ci.example.org"),
        "p.yaml",
    )
    .expect("policy");
    let opted_in = Namespace {
        metadata: named("gitlab", &[("ci.example.org/pod-policy", "enabled")]),
        ..Namespace::default()
    };
    let checks = entry_checks(&policy, base_entry(), &[opted_in]);
    assert_eq!(
        not_ok(&checks),
        [
            (
                Status::Failure,
                "namespaceSelector does not select namespaces labelled ci.example.org/pod-policy=enabled, the policy's opt-in label"
            ),
            (
                Status::Failure,
                "namespaceSelector does not select opted-in namespace(s) gitlab"
            ),
        ]
    );
}

#[test]
fn warn_mode_namespaces_the_selector_misses_fail_and_a_selector_for_all_warns() {
    let policy = Policy::embedded();
    let checks = entry_checks(&policy, base_entry(), &[ns("rollout", "warn")]);
    assert_eq!(
        not_ok(&checks),
        [(
            Status::Failure,
            "namespaceSelector does not select opted-in namespace(s) rollout"
        )]
    );
    let mut everything = base_entry();
    everything.namespace_selector = None;
    let checks = entry_checks(&policy, everything, &[]);
    assert_eq!(
        not_ok(&checks),
        [(
            Status::Warning,
            "namespaceSelector also selects namespaces without ci.skao.int/pod-policy"
        )]
    );
}

fn deployment_with(replicas: i32, ready: Option<i32>) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("ci-pod-webhook".into()),
            namespace: Some("ci-pod-webhook".into()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            ..DeploymentSpec::default()
        }),
        status: Some(DeploymentStatus {
            ready_replicas: ready,
            ..DeploymentStatus::default()
        }),
    }
}

#[test]
fn the_deployment_needs_ready_replicas() {
    let at = "ci-pod-webhook/ci-pod-webhook";
    assert_eq!(
        not_ok(&deployment(at, Ok(Some(&deployment_with(2, Some(2)))))),
        []
    );
    assert_eq!(
        not_ok(&deployment(at, Ok(Some(&deployment_with(2, None))))),
        [(
            Status::Failure,
            "Deployment ci-pod-webhook/ci-pod-webhook: no ready replica (of 2)"
        )]
    );
    assert_eq!(
        not_ok(&deployment(at, Ok(Some(&deployment_with(2, Some(1)))))),
        [(
            Status::Warning,
            "Deployment ci-pod-webhook/ci-pod-webhook: 1 of 2 replicas ready"
        )]
    );
    assert_eq!(
        not_ok(&deployment(at, Ok(Some(&deployment_with(1, Some(1)))))),
        [(
            Status::Warning,
            "Deployment ci-pod-webhook/ci-pod-webhook: 1 replica(s)"
        )]
    );
    assert_eq!(
        not_ok(&deployment(at, Ok(None)))[0].1,
        "Deployment ci-pod-webhook/ci-pod-webhook not found"
    );
}

/// Issue 25, point 8: the GPU entry's matchConditions are static YAML; the doctor checks
/// them against the policy's gpuWorkloads.resources.
#[test]
fn gpu_entry_conditions_must_look_for_every_gpu_workloads_resource() {
    use k8s_openapi::api::admissionregistration::v1::MatchCondition;
    let policy = Policy::embedded();
    let gpu_entry = |expression: &str| MutatingWebhook {
        name: "gpu-workloads.ci-pod-webhook.ci.skao.int".into(),
        client_config: WebhookClientConfig {
            service: Some(ServiceReference {
                name: "ci-pod-webhook".into(),
                namespace: "ci-pod-webhook".into(),
                path: Some("/mutate/gpu-workloads".into()),
                port: Some(443),
            }),
            ..WebhookClientConfig::default()
        },
        match_conditions: Some(vec![MatchCondition {
            name: "asks-for-a-gpu".into(),
            expression: expression.into(),
        }]),
        ..MutatingWebhook::default()
    };
    let with = |entry: MutatingWebhook| MutatingWebhookConfiguration {
        webhooks: Some(vec![base_entry(), entry]),
        ..configuration_of(base_entry())
    };
    // The condition main shipped before: NVIDIA's whole GPUs only.
    let before = with(gpu_entry(
        "has(c.resources.limits) && 'nvidia.com/gpu' in c.resources.limits",
    ));
    let checks = gpu_entry_conditions(&policy, &before);
    assert_eq!(
        not_ok(&checks),
        [(
            Status::Failure,
            "webhook gpu-workloads.ci-pod-webhook.ci.skao.int: matchConditions do not look for gpuWorkloads resource(s) nvidia.com/mig-*, amd.com/gpu"
        )]
    );
    // The base's own condition.
    let base: serde_json::Value = serde_saphyr::from_str(include_str!(
        "../../../manifests/base/mutatingwebhookconfiguration.yaml"
    ))
    .expect("YAML");
    let installed: MutatingWebhookConfiguration = serde_json::from_value(base).expect("object");
    let checks = gpu_entry_conditions(&policy, &installed);
    assert_eq!(not_ok(&checks), []);
    assert_eq!(checks.len(), 1);
    // No matchConditions (1.26-1.29: every pod is sent), no GPU entry, no gpuWorkloads:
    // nothing to say.
    let mut all = gpu_entry("");
    all.match_conditions = None;
    assert!(gpu_entry_conditions(&policy, &with(all)).is_empty());
    assert!(gpu_entry_conditions(&policy, &configuration_of(base_entry())).is_empty());
    let off = Policy {
        gpu_workloads: None,
        ..Policy::embedded()
    };
    assert!(gpu_entry_conditions(&off, &before).is_empty());
}

#[test]
fn the_hosts_dialled_are_the_urls_hosts_and_the_services_names() {
    let entry = |url: Option<&str>, service: Option<(&str, &str)>| MutatingWebhook {
        client_config: WebhookClientConfig {
            url: url.map(str::to_string),
            service: service.map(|(name, namespace)| ServiceReference {
                name: name.into(),
                namespace: namespace.into(),
                ..ServiceReference::default()
            }),
            ca_bundle: None,
        },
        ..MutatingWebhook::default()
    };
    let configuration = MutatingWebhookConfiguration {
        webhooks: Some(vec![
            entry(Some("https://10.0.0.7:8443/mutate"), None),
            entry(None, Some(("ci-pod-webhook", "ci"))),
            entry(Some("https://[fd00::7]:8443/mutate/gpu-workloads"), None),
            entry(Some("https://host.minikube.internal/mutate"), None),
            entry(Some("https://10.0.0.7:8443/mutate/gpu-workloads"), None),
        ]),
        ..MutatingWebhookConfiguration::default()
    };
    assert_eq!(
        dialled_hosts(Some(&configuration), "fallback.svc"),
        [
            "10.0.0.7",
            "ci-pod-webhook.ci.svc",
            "fd00::7",
            "host.minikube.internal"
        ]
    );
    assert_eq!(dialled_hosts(None, "fallback.svc"), ["fallback.svc"]);
}
