//! A job over its class's memory limit ends `OOMKilled`, one within it does not. Mind
//! what the container's status says: when the kernel kills a child of the job's shell
//! (the usual case: a compiler, a test run), the shell goes on, the container exits with
//! the shell's status (0 here) and the pod may well be `Succeeded`, yet its reason is
//! `OOMKilled`. Only a killed PID 1 exits with 137 and fails the pod.

use super::{SMALL_MEMORY, build_pod, ska};
use crate::support::e2e::*;

#[tokio::test]
#[ignore = "e2e on a real node: needs root, KUBEBUILDER_ASSETS with kubelet and kube-controller-manager, and the packages docs/e2e.md lists"]
async fn a_job_over_its_memory_limit_is_oom_killed_and_one_within_it_is_not() {
    let node = Node::take_turn().await;
    let host = node.host_docker().await;
    node.webhook("ska", &ska(host.gid)).await;
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
}
