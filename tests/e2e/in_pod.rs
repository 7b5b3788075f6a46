//! `serve --kube auto` without cluster access. In a pod (`KUBERNETES_SERVICE_HOST` set)
//! that is an error: not Ready, one log line that says what is missing and how to fix
//! it, and Ready once it is fixed, without a restart. Outside a pod it is today's
//! fallback: Ready, trusting the webhook configuration's namespaceSelector. Against the
//! real API server: the pod's variables name it, and a ServiceAccount without RBAC is
//! refused by it.

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::support::e2e::*;

/// Long enough for several of the watch's retries (0.8 s, 1.6 s, 3.2 s, …): a state
/// that lasts this long is not a start-up moment.
const SETTLE: Duration = Duration::from_secs(4);

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn in_a_pod_without_a_token_the_webhook_is_not_ready_and_says_how_to_fix_it() {
    let cp = ControlPlane::shared().await;
    let webhook = cp.start_webhook_in(Place::InPod { kubeconfig: None }).await;
    tokio::time::sleep(SETTLE).await;

    let (status, body) = webhook.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with(
            "not ready: no cluster access in a pod (KUBERNETES_SERVICE_HOST is set): "
        ),
        "{body}"
    );
    assert!(
        body.contains("automountServiceAccountToken: true"),
        "{body}"
    );
    assert!(body.contains("--kube off"), "{body}");

    let errors = webhook.lines_at("ERROR");
    assert_eq!(errors.len(), 1, "one line, not one per retry: {errors:#?}");
    let line = &errors[0];
    assert!(
        line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no cluster access in a pod: not Ready")),
        "{line}"
    );
    assert!(
        line["fix"]
            .as_str()
            .is_some_and(|f| f.contains("automountServiceAccountToken: true")),
        "{line}"
    );
    // No silent fallback: the "trusting the selector" warning of a machine outside a pod
    // is not what a pod logs.
    assert!(
        webhook.lines_at("WARN").iter().all(|l| !l["message"]
            .as_str()
            .unwrap_or_default()
            .contains("trusting the webhook configuration's namespaceSelector")),
        "{:#?}",
        webhook.lines_at("WARN")
    );
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn in_a_pod_whose_account_lacks_rbac_the_webhook_is_not_ready_until_it_is_granted() {
    let cp = ControlPlane::shared().await;
    // manifests/base's ClusterRole exists (it is applied with the webhook's account), but
    // nothing binds it to this account.
    cp.service_account_kubeconfig().await;
    let ns = cp.namespace("in-pod-no-rbac", &[]).await;
    let client = cp.client().await;
    let accounts = Api::<ServiceAccount>::namespaced(client, &ns.name);
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "webhook"}})).expect("SA");
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("create ServiceAccount webhook: {error}"),
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request("webhook", &PostParams::default(), &request)
        .await
        .expect("a token")
        .status
        .expect("status")
        .token;
    let kubeconfig = cp.dir.join("in-pod-no-rbac.kubeconfig");
    std::fs::write(
        &kubeconfig,
        token_kubeconfig(&cp.server, cp.ca_pem(), &token),
    )
    .expect("write the kubeconfig");

    let webhook = cp
        .start_webhook_in(Place::InPod {
            kubeconfig: Some(&kubeconfig),
        })
        .await;
    tokio::time::sleep(SETTLE).await;
    let (status, body) = webhook.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: the API server refuses the namespace watch (403: "),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "User \"system:serviceaccount:{}:webhook\" cannot list resource \"namespaces\"",
            ns.name
        )),
        "{body}"
    );
    assert!(
        body.contains("needs get, list and watch on namespaces: apply ClusterRole and ClusterRoleBinding ci-pod-webhook"),
        "{body}"
    );

    // One error line per refused watch within the 30 s throttle, each saying what it
    // needs and how to grant it.
    let errors = webhook.lines_at("ERROR");
    let refused: Vec<&str> = errors
        .iter()
        .filter(|l| {
            l["message"]
                == "no permission: the API server refuses the watch to the webhook's account"
        })
        .filter_map(|l| l["what"].as_str())
        .collect();
    let mut sorted = refused.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["RuntimeClass", "job pod", "namespace"],
        "{errors:#?}"
    );
    let namespace_line = errors
        .iter()
        .find(|l| l["what"] == "namespace")
        .expect("the namespace line");
    assert_eq!(namespace_line["needs"], "get, list and watch on namespaces");
    assert!(
        namespace_line["fix"]
            .as_str()
            .is_some_and(|f| f.contains("manifests/base/rbac.yaml")),
        "{namespace_line}"
    );

    // Granted: Ready at the watch's next retry, without a restart.
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("e2e-{}", ns.name)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ci-pod-webhook"},
        "subjects": [{"kind": "ServiceAccount", "name": "webhook", "namespace": ns.name}],
    });
    let output = cp.kubectl(&["apply", "-f", "-"], Some(binding.to_string().as_bytes()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let start = Instant::now();
    loop {
        let (status, body) = webhook.readyz().await;
        if status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still not ready {:?} after the binding: {body}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = cp.kubectl(
        &[
            "delete",
            "clusterrolebinding",
            &format!("e2e-{}", ns.name),
            "--ignore-not-found",
        ],
        None,
    );
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn outside_a_pod_without_a_kubeconfig_the_webhook_trusts_the_selector_as_before() {
    let cp = ControlPlane::shared().await;
    let webhook = cp.start_webhook_in(Place::Outside).await;
    let (status, body) = webhook.readyz().await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let warnings = webhook.lines_at("WARN");
    assert!(
        warnings.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no kubeconfig or in-cluster config, no cluster watches; every namespace counts as opted in"))),
        "{warnings:#?}"
    );
    assert!(webhook.lines_at("ERROR").is_empty());
}

/// A kubeconfig for `server` with a bearer token.
fn token_kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: e2e\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: e2e\ncurrent-context: e2e\n"
    )
}
