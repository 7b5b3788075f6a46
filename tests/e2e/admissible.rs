//! Issue 16 section 1 on the real API server: the webhook never turns an admissible pod
//! into one Pod Security Admission refuses.

use serde_json::{Value, json};

use crate::support::e2e::*;

/// A job pod Pod Security `baseline` admits: the fixture without its privileged
/// containers and without the runner's own /var/run/docker.sock hostPath volume.
fn baseline_job_pod() -> Value {
    let mut pod = job_pod("gitlab-runner-17.9-job-pod.json");
    let volumes = pod["spec"]["volumes"].as_array_mut().expect("volumes");
    volumes.retain(|v| v.get("hostPath").is_none());
    let kept: Vec<String> = volumes
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    for list in ["containers", "initContainers"] {
        for container in pod["spec"][list].as_array_mut().into_iter().flatten() {
            container
                .as_object_mut()
                .expect("container")
                .remove("securityContext");
            if let Some(mounts) = container["volumeMounts"].as_array_mut() {
                mounts.retain(|m| {
                    m["name"]
                        .as_str()
                        .is_some_and(|n| kept.iter().any(|k| k == n))
                });
            }
        }
    }
    pod
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn a_namespace_enforcing_baseline_gets_its_job_pods_without_the_docker_socket() {
    let cp = ControlPlane::shared().await;
    cp.webhook().await;
    let ns = cp
        .namespace(
            "psa-baseline",
            &[OPT_IN, ("pod-security.kubernetes.io/enforce", "baseline")],
        )
        .await;
    let stored = ns
        .create_pod(&baseline_job_pod())
        .await
        .expect("admitted: the webhook left the hostPath volume out");
    assert_eq!(
        annotations(&stored)["ci.skao.int/class"],
        json!("k8srunner")
    );
    let build = container(&stored, "build");
    let env = build["env"].as_array().expect("env");
    assert!(!env.iter().any(|e| e["name"] == "DOCKER_HOST"), "{build:#}");
    assert!(
        build["resources"]["limits"]["cpu"].is_string(),
        "the rest of the policy applies"
    );

    // The same pod in a privileged namespace gets the socket (and is admitted too).
    let privileged = cp
        .namespace(
            "psa-privileged",
            &[OPT_IN, ("pod-security.kubernetes.io/enforce", "privileged")],
        )
        .await;
    let stored = privileged
        .create_pod(&baseline_job_pod())
        .await
        .expect("admitted");
    let env = container(&stored, "build")["env"]
        .as_array()
        .expect("env")
        .clone();
    assert!(env.iter().any(|e| e["name"] == "DOCKER_HOST"));
}
