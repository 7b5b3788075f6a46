//! `ci-pod-webhook doctor` against a real kube-apiserver: each ✘ and ‼ it raises about
//! nodes, RuntimeClasses, namespaces, RBAC and the install, from a bare cluster to an
//! installed one. A control plane of its own: the steps change cluster-wide objects
//! (Nodes, the RuntimeClass, the webhook configuration) that other e2e tests rely on, so
//! they run in order in one test. See docs/e2e.md.

use crate::support::e2e::*;
use ci_pod_webhook::certs;
use serde_json::{Value, json};

const CI: (&str, &str) = ("node-role.skatelescope.org/ci-worker", "true");

/// The check with `status` whose message starts with `start`; panics listing all.
fn check<'a>(checks: &'a [Value], status: &str, start: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| {
            c["status"] == status && c["message"].as_str().is_some_and(|m| m.starts_with(start))
        })
        .unwrap_or_else(|| panic!("no {status} check starting with {start:?} in\n{checks:#?}"))
}

fn apply(cp: &ControlPlane, object: &Value) {
    let output = cp.kubectl(&["apply", "-f", "-"], Some(object.to_string().as_bytes()));
    assert!(
        output.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn delete(cp: &ControlPlane, args: &[&str]) {
    let mut all = vec!["delete", "--ignore-not-found"];
    all.extend_from_slice(args);
    let output = cp.kubectl(&all, None);
    assert!(
        output.status.success(),
        "kubectl delete: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn tls_secret(tls_crt: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "ci-pod-webhook-tls", "namespace": WEBHOOK_NAMESPACE},
           "stringData": {"tls.crt": tls_crt, "tls.key": ""}})
}

/// manifests/base's webhook configuration with `ca_pem` as its caBundle.
fn webhook_configuration(ca_pem: &str) -> Value {
    use base64::Engine as _;
    let mut mwc = base_manifest("MutatingWebhookConfiguration").clone();
    mwc["webhooks"][0]["clientConfig"]["caBundle"] =
        json!(base64::engine::general_purpose::STANDARD.encode(ca_pem));
    mwc
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn the_doctor_finds_what_keeps_a_cluster_or_an_install_from_working() {
    let cp = ControlPlane::own("doctor", Options::default()).await;
    let admin = cp.kubeconfig();

    // A bare cluster: no CI node, no namespace opted in.
    let (code, checks) = doctor(admin, &["--pre"]);
    assert_eq!(code, 1, "{checks:#?}");
    let pending = check(
        &checks,
        "failure",
        "class k8srunner: no node can run its job pods",
    );
    assert!(
        pending["hint"]
            .as_str()
            .is_some_and(|h| h.starts_with("every job pod of class k8srunner would stay Pending"))
    );
    assert_eq!(
        pending["fix"],
        "kubectl label node <node> node-role.skatelescope.org/ci-worker=true"
    );
    check(&checks, "warning", "no namespace is opted in");
    check(
        &checks,
        "ok",
        "no ConfigMap ci-pod-webhook/ci-pod-webhook-policy yet",
    );

    // CI and GPU nodes, but a GPU node without GPUs, no RuntimeClass, a baseline namespace.
    cp.create_node("ci-1", json!({CI.0: CI.1}), json!([]), 0)
        .await;
    cp.create_node(
        "gpu-1",
        json!({CI.0: CI.1, "nvidia.com/gpu": "true"}),
        json!([{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]),
        0,
    )
    .await;
    delete(&cp, &["runtimeclass", "nvidia"]);
    let _ns = cp
        .namespace(
            "doctor-baseline",
            &[OPT_IN, ("pod-security.kubernetes.io/enforce", "baseline")],
        )
        .await;
    let (code, checks) = doctor(admin, &["--pre"]);
    assert_eq!(code, 1);
    // gpu-1 is a CI node too, but its GPU taint keeps the other classes off it.
    check(
        &checks,
        "ok",
        "class k8srunner: 1 node(s) can run its job pods (ci-1)",
    );
    check(
        &checks,
        "ok",
        "class k8srunner-gpu-v100: 1 node(s) can run its job pods (gpu-1)",
    );
    check(
        &checks,
        "failure",
        "class k8srunner-gpu-v100: none of its nodes has 1 allocatable nvidia.com/gpu",
    );
    check(
        &checks,
        "failure",
        "class k8srunner-gpu-v100: RuntimeClass nvidia does not exist",
    );
    check(
        &checks,
        "warning",
        "namespace doctor-baseline: enforces Pod Security baseline",
    );

    // GPUs and the RuntimeClass: only the warning is left, and the exit code is 0.
    cp.create_node(
        "gpu-2",
        json!({CI.0: CI.1, "nvidia.com/gpu": "true"}),
        json!([{"key": "nvidia.com/gpu", "effect": "NoExecute"}]),
        2,
    )
    .await;
    apply(
        &cp,
        &json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"}),
    );
    let (code, checks) = doctor(admin, &["--pre"]);
    assert_eq!(code, 0, "{checks:#?}");
    check(
        &checks,
        "ok",
        "class k8srunner-gpu-v100: RuntimeClass nvidia exists",
    );

    // Missing RBAC: the webhook's own account may not list nodes.
    let (code, checks) = doctor(cp.service_account_kubeconfig().await, &["--pre"]);
    assert_eq!(code, 1);
    let forbidden = check(&checks, "failure", "cannot list nodes: ");
    assert!(
        forbidden["message"]
            .as_str()
            .is_some_and(|m| m.contains("forbidden")),
        "{forbidden}"
    );

    // Nothing installed: every install check fails.
    let (code, checks) = doctor(admin, &[]);
    assert_eq!(code, 1);
    check(
        &checks,
        "failure",
        "ConfigMap ci-pod-webhook/ci-pod-webhook-policy (key policy.yaml) not found",
    );
    check(
        &checks,
        "failure",
        "MutatingWebhookConfiguration ci-pod-webhook not found",
    );
    check(
        &checks,
        "failure",
        "Secret ci-pod-webhook/ci-pod-webhook-tls not found",
    );
    check(
        &checks,
        "failure",
        "Deployment ci-pod-webhook/ci-pod-webhook not found",
    );
    check(&checks, "failure", "DaemonSet ci-dind/ci-dind not found");

    // An install whose certificate names localhost only: the silent fail-open.
    let policy = std::fs::read_to_string(repo_file("manifests/base/policy.yaml")).expect("policy");
    apply(
        &cp,
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ci-pod-webhook-policy", "namespace": WEBHOOK_NAMESPACE},
        "data": {"policy.yaml": policy}}),
    );
    let local = certs::generate("dev", &["localhost".into()], 365).expect("certs");
    apply(&cp, &webhook_configuration(&local.ca_cert));
    apply(&cp, &tls_secret(&local.tls_cert));
    apply(
        &cp,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ci-pod-webhook", "namespace": WEBHOOK_NAMESPACE},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "w"}},
                 "template": {"metadata": {"labels": {"app": "w"}},
                              "spec": {"containers": [{"name": "webhook", "image": "ci-pod-webhook:0.1.0"}]}}}}),
    );
    let (code, checks) = doctor(admin, &[]);
    assert_eq!(code, 1);
    check(
        &checks,
        "ok",
        "policy ConfigMap ci-pod-webhook/ci-pod-webhook-policy is valid",
    );
    check(
        &checks,
        "ok",
        "MutatingWebhookConfiguration ci-pod-webhook present",
    );
    check(
        &checks,
        "ok",
        "namespaceSelector selects namespaces labelled ci.skao.int/pod-policy=enabled",
    );
    check(&checks, "ok", "caBundle verifies the serving certificate");
    check(
        &checks,
        "failure",
        "certificate names (localhost) do not cover ci-pod-webhook.ci-pod-webhook.svc",
    );
    // No controller-manager runs: the Deployment never gets a ready replica.
    check(
        &checks,
        "failure",
        "Deployment ci-pod-webhook/ci-pod-webhook: no ready replica (of 2)",
    );
    // No Service to dial; the Deployment's pods run as ServiceAccount `default`, which
    // does not exist here and which nothing grants the webhook's reads.
    check(
        &checks,
        "failure",
        "Service ci-pod-webhook/ci-pod-webhook not found",
    );
    check(
        &checks,
        "failure",
        "ServiceAccount ci-pod-webhook/default not found",
    );
    check(
        &checks,
        "failure",
        "ServiceAccount ci-pod-webhook/default may not get, list, watch namespaces",
    );
    check(
        &checks,
        "warning",
        "ServiceAccount ci-pod-webhook/default may not list, watch pods",
    );

    // A certificate for the Service from another CA, due in 20 days; a 10 s timeout.
    let names = certs::service_names("ci-pod-webhook", WEBHOOK_NAMESPACE);
    let other = certs::generate("other", &names, 20).expect("certs");
    apply(&cp, &tls_secret(&other.tls_cert));
    let mut slow = webhook_configuration(&local.ca_cert);
    slow["webhooks"][0]["timeoutSeconds"] = json!(10);
    apply(&cp, &slow);
    let (_, checks) = doctor(admin, &[]);
    check(
        &checks,
        "failure",
        "caBundle does not verify the serving certificate",
    );
    check(&checks, "warning", "serving certificate expires in 1");
    check(&checks, "warning", "timeoutSeconds 10");

    // The right CA; the node Docker DaemonSet on other nodes than the CI nodes.
    apply(&cp, &webhook_configuration(&other.ca_cert));
    apply(
        &cp,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ci-dind"}}),
    );
    apply(
        &cp,
        &json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "ci-dind", "namespace": "ci-dind"},
        "spec": {"selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"nodeSelector": {"role": "docker"},
                                       "containers": [{"name": "dockerd", "image": "docker:dind"}]}}}}),
    );
    let (_, checks) = doctor(admin, &[]);
    check(
        &checks,
        "ok",
        "certificate names cover ci-pod-webhook.ci-pod-webhook.svc",
    );
    check(
        &checks,
        "failure",
        "DaemonSet ci-dind/ci-dind does not run on 3 of 3 CI node(s)",
    );

    // SKA's policy: socket mode on the host's own daemon (docker-for-gitlab, `mount:
    // file`). No DaemonSet is demanded, and doctor says what it cannot see.
    delete(&cp, &["-n", "ci-dind", "daemonset", "ci-dind"]);
    let ska = std::fs::read_to_string(repo_file("examples/policies/ska-techops.yaml"))
        .expect("ska-techops.yaml");
    apply(
        &cp,
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ci-pod-webhook-policy", "namespace": WEBHOOK_NAMESPACE},
        "data": {"policy.yaml": ska}}),
    );
    let (_, checks) = doctor(admin, &[]);
    let docker: Vec<&Value> = checks
        .iter()
        .filter(|c| c["group"] == "node Docker daemon")
        .collect();
    assert!(
        docker.iter().all(|c| c["status"] == "ok"),
        "a host daemon needs no DaemonSet: {docker:#?}"
    );
    let host = check(
        &checks,
        "ok",
        "socket mode on a host daemon: /var/run/docker-for-gitlab.sock",
    );
    assert!(
        host["hint"]
            .as_str()
            .is_some_and(|h| h.contains("cannot see")),
        "{host:#}"
    );

    // A webhook the API server reaches at a URL: the certificate must name its host.
    let mut by_url = webhook_configuration(&other.ca_cert);
    by_url["webhooks"][0]["clientConfig"] = json!({"url": "https://10.0.0.7:8443/mutate", "caBundle": by_url["webhooks"][0]["clientConfig"]["caBundle"]});
    apply(&cp, &by_url);
    let (_, checks) = doctor(admin, &[]);
    let uncovered = check(&checks, "failure", "certificate names (");
    assert!(
        uncovered["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("do not cover 10.0.0.7")),
        "{uncovered:#}"
    );
    let mut with_ip = names.clone();
    with_ip.push("10.0.0.7".to_string());
    let rotated = certs::generate("rotated", &with_ip, 90).expect("certs");
    apply(&cp, &tls_secret(&rotated.tls_cert));
    let mut by_url = webhook_configuration(&rotated.ca_cert);
    by_url["webhooks"][0]["clientConfig"] = json!({"url": "https://10.0.0.7:8443/mutate", "caBundle": by_url["webhooks"][0]["clientConfig"]["caBundle"]});
    apply(&cp, &by_url);
    let (_, checks) = doctor(admin, &[]);
    check(&checks, "ok", "certificate names cover 10.0.0.7");

    install_gate(&cp, &rotated).await;
}

/// The install as manifests/base has it (Service, Deployment, the webhook's account and
/// RBAC): the Service and cluster-access checks from ✘ to ✔, and `--install` passing on
/// a cluster that a full run fails (no node Docker DaemonSet, no GPU node).
async fn install_gate(cp: &ControlPlane, certificate: &certs::Generated) {
    let admin = cp.kubeconfig();
    // The webhook's Namespace, ServiceAccount, ClusterRole and binding (manifests/base).
    cp.service_account_kubeconfig().await;
    let policy = std::fs::read_to_string(repo_file("manifests/base/policy.yaml")).expect("policy");
    apply(
        cp,
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ci-pod-webhook-policy", "namespace": WEBHOOK_NAMESPACE},
        "data": {"policy.yaml": policy}}),
    );
    apply(cp, &webhook_configuration(&certificate.ca_cert));
    apply(cp, &tls_secret(&certificate.tls_cert));
    // A Deployment's selector cannot change: replace the stand-in with the base one,
    // first without the token.
    delete(
        cp,
        &["-n", WEBHOOK_NAMESPACE, "deployment", "ci-pod-webhook"],
    );
    let mut deployment = base_manifest("Deployment").clone();
    deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] = json!(false);
    apply(cp, &deployment);
    apply(cp, base_manifest("Service"));
    let (_, checks) = doctor(admin, &["--install"]);
    check(
        &checks,
        "failure",
        "the webhook's pods mount no token: automountServiceAccountToken is false on the Deployment's pod template",
    );
    check(
        &checks,
        "ok",
        "Service ci-pod-webhook/ci-pod-webhook port 443 targets container port 8443 (https), where serve listens",
    );
    // No controller-manager here: no EndpointSlice, no ready replica.
    check(
        &checks,
        "failure",
        "Service ci-pod-webhook/ci-pod-webhook has no ready endpoint (0 not ready)",
    );
    for access in [
        "get, list and watch on namespaces",
        "list and watch on runtimeclasses.node.k8s.io",
        "list and watch on pods",
    ] {
        check(
            &checks,
            "ok",
            &format!("ServiceAccount ci-pod-webhook/ci-pod-webhook may {access}"),
        );
    }

    // What the controller-manager would do on a cluster with nodes: two ready pods
    // behind the Service, a Deployment status saying so.
    apply(cp, base_manifest("Deployment"));
    apply(
        cp,
        &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "ci-pod-webhook-e2e", "namespace": WEBHOOK_NAMESPACE,
                     "labels": {"kubernetes.io/service-name": "ci-pod-webhook"}},
        "addressType": "IPv4",
        "ports": [{"name": "https", "port": 8443, "protocol": "TCP"},
                  {"name": "metrics", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.22.0.2"], "conditions": {"ready": true}},
                      {"addresses": ["10.22.0.3"], "conditions": {"ready": true}}]}),
    );
    let status = json!({"status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}});
    let output = cp.kubectl(
        &[
            "-n",
            WEBHOOK_NAMESPACE,
            "patch",
            "deployment",
            "ci-pod-webhook",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A cluster without GPUs on its nodes and without the node Docker DaemonSet.
    delete(cp, &["node", "gpu-2"]);
    let (code, checks) = doctor(admin, &[]);
    assert_eq!(code, 1, "a full run fails here: {checks:#?}");
    check(&checks, "failure", "DaemonSet ci-dind/ci-dind not found");
    check(
        &checks,
        "failure",
        "class k8srunner-gpu-v100: none of its nodes has 1 allocatable nvidia.com/gpu",
    );

    let (code, checks) = doctor(admin, &["--install"]);
    let not_ok: Vec<&Value> = checks.iter().filter(|c| c["status"] != "ok").collect();
    assert_eq!(code, 0, "{not_ok:#?}");
    // The one warning: this install's Deployment names no trusted peers (the API
    // server's address depends on the cluster; docs/network.md). A warning never fails
    // the gate.
    let messages: Vec<(&str, &str)> = not_ok
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [(
            "warning",
            "Deployment ci-pod-webhook/ci-pod-webhook: CI_POD_WEBHOOK_TRUSTED_PEERS is empty: no trusted peers"
        )],
        "{not_ok:#?}"
    );
    assert!(
        checks
            .iter()
            .all(|c| !["runner classes", "namespaces", "node Docker daemon"]
                .contains(&c["group"].as_str().unwrap_or_default())),
        "{checks:#?}"
    );
    check(
        &checks,
        "ok",
        "Service ci-pod-webhook/ci-pod-webhook: 2 ready endpoint(s) on port 8443",
    );
    check(
        &checks,
        "ok",
        "the webhook's pods mount the token of ServiceAccount ci-pod-webhook/ci-pod-webhook",
    );
}
