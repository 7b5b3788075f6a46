//! A job over its class's memory limit ends `OOMKilled`, one within it does not. Mind
//! what the container's status says: when the kernel kills a child of the job's shell
//! (the usual case: a compiler, a test run), the shell goes on, the container exits with
//! the shell's status (0 here) and the pod may well be `Succeeded`, yet its reason is
//! `OOMKilled`. Only a killed PID 1 exits with 137 and fails the pod.
//!
//! What the kubelet writes is what the webhook's pods watch counts
//! (`ci_pod_webhook_job_container_terminations_total`, docs/sizing.md): both kills as
//! `OOMKilled`, whatever the exit code, and the job within its limit as `Completed`.

use super::{SMALL_MEMORY, build_pod, ska};
use crate::support::e2e::*;

#[tokio::test]
#[ignore = "e2e on a real node: needs root, KUBEBUILDER_ASSETS with kubelet and kube-controller-manager, and the packages docs/e2e.md lists"]
async fn a_job_over_its_memory_limit_is_oom_killed_and_one_within_it_is_not() {
    let node = Node::take_turn().await;
    let host = node.host_docker().await;
    let webhook = node.webhook("ska", &ska(host.gid)).await;
    let ns = node
        .namespace("node-oom", "ska", &[(RUNNER_CLASS, SMALL_MEMORY)])
        .await;
    // busybox's tail keeps all of a line in memory: 200 MiB of zeros is one line.
    let cases = [
        (
            "hog-child",
            "head -c 200m /dev/zero | tail > /dev/null; echo \"tail exited $?\"",
            "OOMKilled/0",
            "Succeeded",
            Some("tail exited 137"),
        ),
        (
            "hog-pid1",
            "exec tail /dev/zero",
            "OOMKilled/137",
            "Failed",
            None,
        ),
        (
            "within",
            "head -c 32m /dev/zero | tail > /dev/null; echo \"tail exited $?\"",
            "Completed/0",
            "Succeeded",
            Some("tail exited 0"),
        ),
    ];
    for (name, script, _, _, _) in cases {
        let stored = ns
            .create_pod(&build_pod(name, BUSYBOX, script))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            container(&stored, "build")["resources"]["limits"]["memory"],
            "64Mi",
            "{name}: the class's memory limit"
        );
    }
    for (name, _, termination_of_build, phase, said) in cases {
        let done = ns.finished(name).await;
        assert_eq!(termination(&done, "build"), termination_of_build, "{name}");
        assert_eq!(done["status"]["phase"], phase, "{name}");
        if let Some(said) = said {
            let log = ns.logs(name, "build").await;
            assert!(log.contains(said), "{name}: {log}");
        }
    }

    // The kills as the webhook counts them, from the statuses the kubelet wrote. The
    // class is this test's alone, so no other pod adds to these series.
    let mut want: Vec<String> = [("Completed", 1), ("OOMKilled", 2)]
        .iter()
        .map(|(reason, count)| {
            format!(
                "ci_pod_webhook_job_container_terminations_total{{class=\"{SMALL_MEMORY}\",role=\"build\",reason=\"{reason}\"}} {count}"
            )
        })
        .collect();
    want.sort();
    let deadline = std::time::Instant::now() + POD_PATIENCE;
    loop {
        let mut seen: Vec<String> = webhook
            .metrics()
            .await
            .lines()
            .filter(|l| {
                l.starts_with("ci_pod_webhook_job_container_terminations_total{")
                    && l.contains(&format!("class=\"{SMALL_MEMORY}\",role=\"build\""))
            })
            .map(str::to_string)
            .collect();
        seen.sort();
        if seen == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook's count of build terminations: wanted\n{}\ngot\n{}",
            want.join("\n"),
            seen.join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
