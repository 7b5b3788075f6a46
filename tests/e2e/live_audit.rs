//! The live gauge `ci_pod_webhook_job_pods{class,verdict}` says what `audit -o json`
//! says (same policy, same cluster) within seconds of every event of a rollout (issue
//! 26, point 2): a namespace opts in, changes mode (enabled, warn, off), a policy
//! reload, a pod deleted, the watches restarted after an outage, a namespace deleted.
//! A control plane of its own: the test registers its own webhook, reloads its policy
//! and cuts its connection to the API server. See docs/e2e.md.

use std::time::Duration;

use crate::support::e2e::*;

const V17_9: &str = "gitlab-runner-17.9-job-pod.json";
const POLICY_LABEL: &str = "ci.skao.int/pod-policy";

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn the_live_gauge_agrees_with_audit_after_every_rollout_event() {
    let cp = ControlPlane::own("live-audit", Options::default()).await;
    let policy = cp.dir.join("policy.yaml");
    let base_policy = std::fs::read_to_string(repo_file("manifests/base/policy.yaml"))
        .expect("manifests/base/policy.yaml");
    std::fs::write(&policy, &base_policy).expect("write the policy");
    // The webhook reaches the API server through a proxy the test can cut.
    let proxy = Proxy::start(cp.port()).await;
    let webhook = cp
        .start_webhook_through(&policy, &format!("https://127.0.0.1:{}", proxy.port))
        .await;
    cp.register_webhook(&webhook).await;
    let mut took = Vec::new();

    // Job pods created before their namespace opts in: the webhook is not called.
    let ns = cp.namespace("live-late", &[]).await;
    ns.create_pod(&renamed(&job_pod(V17_9), "early"))
        .await
        .expect("created");
    let mut lots = renamed(&job_pod(V17_9), "lots");
    lots["metadata"]["annotations"]["ci.skao.int/cpu-limit"] = "lots".into();
    ns.create_pod(&lots).await.expect("created");
    let counts = agree(
        &cp,
        &webhook,
        &policy,
        &mut took,
        "job pods created in a namespace that has not opted in",
    )
    .await;
    assert!(counts.is_empty(), "{counts:?}");

    ns.label(&[(POLICY_LABEL, Some("enabled"))]).await;
    let counts = agree(&cp, &webhook, &policy, &mut took, "the namespace opts in").await;
    assert_eq!(counts[&key("k8srunner", "unpolicied")], 2, "{counts:?}");
    assert_eq!(counts[&key("k8srunner", "would-deny")], 1, "{counts:?}");

    ns.label(&[(POLICY_LABEL, Some("warn"))]).await;
    let counts = agree(
        &cp,
        &webhook,
        &policy,
        &mut took,
        "the namespace switches from enabled to warn",
    )
    .await;
    assert_eq!(counts[&key("k8srunner", "would-mutate")], 1, "{counts:?}");
    assert!(!counts.contains_key(&key("k8srunner", "unpolicied")));

    ns.label(&[(POLICY_LABEL, None)]).await;
    let counts = agree(
        &cp,
        &webhook,
        &policy,
        &mut took,
        "the namespace opts out (off)",
    )
    .await;
    assert!(counts.is_empty(), "{counts:?}");

    ns.label(&[(POLICY_LABEL, Some("enabled"))]).await;
    agree(
        &cp,
        &webhook,
        &policy,
        &mut took,
        "the namespace opts in again",
    )
    .await;
    ns.create_pod(&renamed(&job_pod(V17_9), "admitted"))
        .await
        .expect("created");
    let counts = agree(&cp, &webhook, &policy, &mut took, "a job pod admitted").await;
    assert_eq!(counts[&key("k8srunner", "ok")], 1, "{counts:?}");

    let lowered = base_policy
        .replacen(
            r#"limits: { cpu: "5", memory: 10Gi }"#,
            r#"limits: { cpu: "4", memory: 10Gi }"#,
            1,
        )
        .replacen(
            r#"max:      { cpu: "8", memory: 16Gi }"#,
            r#"max:      { cpu: "4", memory: 16Gi }"#,
            1,
        );
    assert_ne!(lowered, base_policy);
    std::fs::write(&policy, &lowered).expect("write the lowered policy");
    // audit reads the new file at once; the gauge follows when the webhook reloads.
    let counts = agree(&cp, &webhook, &policy, &mut took, "a policy reload").await;
    assert_eq!(counts[&key("k8srunner", "drift")], 1, "{counts:?}");

    ns.delete_pod("early").await;
    agree(&cp, &webhook, &policy, &mut took, "a job pod deleted").await;

    // An outage between the webhook and the API server: the watches fail, and restart
    // when it ends. Meanwhile a pod goes and the namespace changes mode.
    proxy.cut();
    ns.delete_pod("admitted").await;
    ns.label(&[(POLICY_LABEL, Some("warn"))]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();
    let counts = agree(
        &cp,
        &webhook,
        &policy,
        &mut took,
        "the watches restart after an outage",
    )
    .await;
    assert_eq!(counts[&key("k8srunner", "would-deny")], 1, "{counts:?}");
    // The outage really broke both watches, and they came back.
    let logged = webhook.log_lines();
    for what in ["job pod", "namespace"] {
        for message in ["watch failed", "watch recovered"] {
            assert!(
                logged.iter().any(|l| l["what"] == what
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(message))),
                "no {message:?} for the {what} watch in the webhook's log"
            );
        }
    }

    ns.delete().await;
    let counts = agree(&cp, &webhook, &policy, &mut took, "the namespace deleted").await;
    assert!(counts.is_empty(), "{counts:?}");

    for (step, took) in took {
        eprintln!("{took:>8.1?}  {step}");
    }
}

/// Waits until the gauge agrees with audit after `step`; the gauge's counts then.
async fn agree(
    cp: &ControlPlane,
    webhook: &Webhook,
    policy: &std::path::Path,
    took: &mut Vec<(&'static str, Duration)>,
    step: &'static str,
) -> Counts {
    took.push((
        step,
        gauge_agrees_with_audit(cp, webhook, policy, step).await,
    ));
    gauge_counts(webhook).await
}

fn key(class: &str, verdict: &str) -> (String, String) {
    (class.to_string(), verdict.to_string())
}
