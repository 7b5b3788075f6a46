//! The whole run over fetched objects: which groups run, and how the policy is found.

use super::*;

fn unread() -> String {
    "not read".to_string()
}

fn snapshot(policy_text: Fetched<Option<String>>) -> Snapshot {
    Snapshot {
        nodes: Ok(Vec::new()),
        runtime_classes: Ok(Vec::new()),
        namespaces: Ok(Vec::new()),
        policy_text,
        webhook_configuration: Ok(None),
        tls_secret: Ok(None),
        deployment: Ok(None),
        daemon_set: Ok(None),
        service: Ok(None),
        endpoint_slices: Ok(Vec::new()),
        account: ("ci-pod-webhook".into(), "ci-pod-webhook".into()),
        service_account: Ok(None),
        access: Vec::new(),
    }
}

use fetch::Fetched;

fn groups(report: &Report) -> Vec<&str> {
    let mut groups: Vec<&str> = report.checks.iter().map(|c| c.group.as_str()).collect();
    groups.dedup();
    groups
}

fn inputs<'a>(names: &'a Names, pre: bool, policy_file: Option<&'a Path>) -> Inputs<'a> {
    Inputs {
        names,
        policy_file,
        scope: if pre { Scope::Pre } else { Scope::All },
        now: OffsetDateTime::now_utc(),
    }
}

#[test]
fn pre_checks_only_what_exists_before_an_install() {
    let names = Names::default();
    let report = checks(&inputs(&names, true, None), &snapshot(Ok(None)));
    assert_eq!(groups(&report), ["policy", "runner classes", "namespaces"]);
    assert_eq!(report.checks[0].status, Status::Ok);
    assert!(report.checks[0].message.contains("embedded default policy"));
}

#[test]
fn a_full_run_checks_the_install_too() {
    let names = Names::default();
    let report = checks(
        &inputs(&names, false, None),
        &snapshot(Ok(Some(
            ci_pod_webhook_core::policy::DEFAULT_POLICY_YAML.into(),
        ))),
    );
    assert_eq!(
        groups(&report),
        [
            "policy",
            "runner classes",
            "namespaces",
            "webhook",
            "certificate",
            "webhook",
            "webhook's cluster access",
            "node Docker daemon"
        ]
    );
    assert_eq!(
        report.checks[0].message.split(" is valid").next(),
        Some("policy ConfigMap ci-pod-webhook/ci-pod-webhook-policy")
    );
    assert!(report.failed());
}

#[test]
fn an_invalid_policy_fails_and_skips_the_checks_that_need_it() {
    let names = Names::default();
    let report = checks(
        &inputs(&names, false, None),
        &snapshot(Ok(Some("prefix: [".into()))),
    );
    assert_eq!(report.checks.len(), 1);
    assert_eq!(report.checks[0].status, Status::Failure);
    assert!(
        report.checks[0]
            .message
            .starts_with("policy ConfigMap ci-pod-webhook/ci-pod-webhook-policy is invalid: ")
    );
    assert!(!report.checks[0].message.contains('\n'));
}

#[test]
fn an_unreadable_or_missing_policy_config_map_fails_but_the_checks_go_on() {
    let names = Names::default();
    for text in [Err(unread()), Ok(None)] {
        let report = checks(&inputs(&names, false, None), &snapshot(text));
        assert_eq!(report.checks[0].status, Status::Failure);
        assert!(report.checks.len() > 1);
    }
}

#[test]
fn a_policy_file_is_checked_instead_of_the_config_map() {
    let names = Names::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, ci_pod_webhook_core::policy::DEFAULT_POLICY_YAML).expect("write");
    let report = checks(&inputs(&names, true, Some(&path)), &snapshot(Err(unread())));
    assert_eq!(report.checks[0].status, Status::Ok);
    assert!(
        report.checks[0].message.contains("policy.yaml is valid"),
        "{:?}",
        report.checks[0]
    );
}

/// Issue 25: doctor warns where a safe default is turned off, as `check-policy` does:
/// `ephemeralContainers: allow` lets any debug container into job pods.
#[test]
fn the_policy_warnings_are_doctor_warnings() {
    let names = Names::default();
    let text = format!(
        "{}\nephemeralContainers: allow\n",
        ci_pod_webhook_core::policy::DEFAULT_POLICY_YAML
    );
    let report = checks(&inputs(&names, true, None), &snapshot(Ok(Some(text))));
    let warned: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.group == "policy" && c.status == Status::Warning)
        .map(|c| c.message.as_str())
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].starts_with("ephemeralContainers: allow"),
        "{warned:?}"
    );
    // The default policy warns of nothing.
    let report = checks(&inputs(&names, true, None), &snapshot(Ok(None)));
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.status != Status::Warning || c.group != "policy")
    );
}

#[test]
fn the_certificate_is_checked_for_the_url_host_the_api_server_dials() {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhook, MutatingWebhookConfiguration, WebhookClientConfig,
    };
    use k8s_openapi::api::core::v1::Secret;

    let names = Names::default();
    // A rotation that kept the Service's names and dropped the IP the API server dials.
    let service = crate::certs::service_names("ci-pod-webhook", "ci-pod-webhook");
    let generated = crate::certs::generate("rotated", &service, 90).expect("certs");
    let configuration = |url: &str| MutatingWebhookConfiguration {
        webhooks: Some(vec![MutatingWebhook {
            name: "pods.ci-pod-webhook.ci.skao.int".into(),
            client_config: WebhookClientConfig {
                url: Some(url.into()),
                ca_bundle: Some(ByteString(generated.ca_cert.clone().into_bytes())),
                service: None,
            },
            ..MutatingWebhook::default()
        }]),
        ..MutatingWebhookConfiguration::default()
    };
    let secret = Secret {
        data: Some(std::collections::BTreeMap::from([(
            "tls.crt".to_string(),
            ByteString(generated.tls_cert.clone().into_bytes()),
        )])),
        ..Secret::default()
    };
    for (url, status, message) in [
        (
            "https://10.0.0.7:8443/mutate",
            Status::Failure,
            "do not cover 10.0.0.7",
        ),
        (
            "https://webhook.example.org/mutate",
            Status::Failure,
            "do not cover webhook.example.org",
        ),
        (
            "https://ci-pod-webhook.ci-pod-webhook.svc:8443/mutate",
            Status::Ok,
            "certificate names cover ci-pod-webhook.ci-pod-webhook.svc",
        ),
    ] {
        let mut fetched = snapshot(Ok(Some(
            ci_pod_webhook_core::policy::DEFAULT_POLICY_YAML.into(),
        )));
        fetched.webhook_configuration = Ok(Some(configuration(url)));
        fetched.tls_secret = Ok(Some(secret.clone()));
        let report = checks(&inputs(&names, false, None), &fetched);
        let found = report
            .checks
            .iter()
            .find(|c| c.group == "certificate" && c.message.contains(message))
            .unwrap_or_else(|| panic!("{url}: no {message:?} in {:#?}", report.checks));
        assert_eq!(found.status, status, "{url}: {found:?}");
    }
}

#[test]
fn pre_says_a_host_daemon_needs_nothing_installed() {
    let names = Names::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ska-dp.yaml");
    std::fs::write(&path, include_str!("../../examples/policies/ska-dp.yaml")).expect("write");
    let report = checks(&inputs(&names, true, Some(&path)), &snapshot(Err(unread())));
    assert_eq!(
        groups(&report),
        [
            "policy",
            "runner classes",
            "namespaces",
            "node Docker daemon"
        ]
    );
    let last = report.checks.last().expect("a check");
    assert_eq!(last.status, Status::Ok);
    assert!(
        last.message.starts_with("socket mode on a host daemon"),
        "{last:?}"
    );
}

#[test]
fn the_install_gate_checks_the_install_alone() {
    let names = Names::default();
    let mut install = inputs(&names, false, None);
    install.scope = Scope::Install;
    // Nodes and the DaemonSet are not even read: they would fail a full run.
    let mut fetched = snapshot(Ok(Some(
        ci_pod_webhook_core::policy::DEFAULT_POLICY_YAML.into(),
    )));
    fetched.nodes = Err(unread());
    fetched.daemon_set = Err(unread());
    let report = checks(&install, &fetched);
    assert_eq!(
        groups(&report),
        [
            "policy",
            "webhook",
            "certificate",
            "webhook",
            "webhook's cluster access"
        ]
    );
}

#[test]
fn the_install_gate_fails_on_a_missing_policy_config_map_as_a_full_run_does() {
    let names = Names::default();
    let mut install = inputs(&names, false, None);
    install.scope = Scope::Install;
    let report = checks(&install, &snapshot(Ok(None)));
    assert_eq!(report.checks[0].status, Status::Failure);
}
