//! The node Docker DaemonSet of manifests/node-docker, applied unchanged with its image
//! replaced by a local stand-in (docs/e2e.md), runs dockerd in a privileged pod and
//! serves its socket in /var/run/ci-dind on the host; job pods of the default policy
//! (`mount: directory`) reach it through `DOCKER_HOST`, a uid-1000 build only with
//! `socketGroup: 2375`.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::time::Duration;

use serde_json::{Value, json};

use super::{DOCKER_PROBE, build_pod, default_policy, probe};
use crate::support::e2e::*;

/// The gid of group `docker` in the docker image, which owns the daemon's socket.
const DIND_GROUP: u32 = 2375;
const SOCKET: &str = "/var/run/ci-dind/docker.sock";

/// A job pod of the default policy with a small build request (the class asks for a
/// whole CPU; three pods beside the DaemonSet's would not fit 2 CPUs).
fn small(mut pod: Value) -> Value {
    pod["metadata"]["annotations"] = json!({"ci.skao.int/cpu-request": "100m"});
    pod
}

#[tokio::test]
#[ignore = "e2e on a real node: needs root, KUBEBUILDER_ASSETS with kubelet and kube-controller-manager, and the packages docs/e2e.md lists"]
async fn jobs_reach_the_node_docker_daemonset_through_its_directory() {
    let node = Node::take_turn().await;
    node.dind_image().await;
    let manifests = repo_file("manifests/node-docker");
    let applied = node
        .cp
        .kubectl(&["apply", "-k", &manifests.display().to_string()], None);
    assert!(
        applied.status.success(),
        "kubectl apply -k manifests/node-docker: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    node.webhook("default", &default_policy(None)).await;
    node.webhook("default-group", &default_policy(Some(DIND_GROUP)))
        .await;
    let daemon = TestNamespace {
        name: "ci-dind".to_string(),
        cp: &node.cp,
    };
    // Ready: its readiness probe (`docker version` on the socket) passed; the probe's
    // first run is 5 s after the start, then every 10 s.
    let started = std::time::Instant::now();
    let pod_name = loop {
        let listed = node
            .cp
            .kubectl(&["-n", "ci-dind", "get", "pods", "-o", "name"], None);
        let names = String::from_utf8_lossy(&listed.stdout).to_string();
        if let Some(first) = names.lines().next() {
            break first.trim_start_matches("pod/").to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the DaemonSet made no pod in 60 s: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    daemon
        .wait_for_pod(&pod_name, "Ready", POD_PATIENCE, |pod| {
            pod["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|s| s.len() == 2 && s.iter().all(|c| c["ready"] == true))
        })
        .await;
    let socket = std::fs::metadata(SOCKET).expect("the daemon's socket on the host");
    assert_eq!(
        (
            socket.uid(),
            socket.gid(),
            socket.permissions().mode() & 0o7777
        ),
        (0, DIND_GROUP, 0o660),
        "{SOCKET}: root:{DIND_GROUP} 0660"
    );

    let plain = node.namespace("node-dind", "default", &[]).await;
    let grouped = node
        .namespace("node-dind-group", "default-group", &[])
        .await;
    for (ns, name, image) in [
        (&plain, "as-root", DOCKER_CLI),
        (&plain, "as-uid-1000", DOCKER_CLI_NONROOT),
        (&grouped, "as-uid-1000", DOCKER_CLI_NONROOT),
    ] {
        let stored = ns
            .create_pod(&small(build_pod(name, image, DOCKER_PROBE)))
            .await
            .unwrap_or_else(|e| panic!("{}/{name}: {e}", ns.name));
        let volume = stored["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["hostPath"]["path"] == "/var/run/ci-dind")
            .unwrap_or_else(|| panic!("{}/{name}: no volume of the directory", ns.name));
        assert_eq!(volume["name"], "ci-dind");
        assert_eq!(volume["hostPath"]["type"], "DirectoryOrCreate");
        let groups = &stored["spec"]["securityContext"]["supplementalGroups"];
        if ns.name == grouped.name {
            assert_eq!(*groups, json!([DIND_GROUP]));
        } else {
            assert!(groups.is_null(), "{groups}");
        }
    }
    for (ns, name, reaches) in [
        (&plain, "as-root", true),
        (&plain, "as-uid-1000", false),
        (&grouped, "as-uid-1000", true),
    ] {
        ns.finished(name).await;
        let log = ns.logs(name, "build").await;
        let what = format!("{}/{name}:\n{log}", ns.name);
        if reaches {
            assert_eq!(probe(&log, "PING"), "OK", "{what}");
            assert!(probe(&log, "CLI").contains("server="), "{what}");
            assert!(!probe(&log, "CLI").contains("permission denied"), "{what}");
        } else {
            assert!(
                probe(&log, "PING").contains("Couldn't connect to server"),
                "{what}"
            );
            assert!(probe(&log, "CLI").contains("permission denied"), "{what}");
        }
        // The directory mount shows the daemon's socket, which is all it holds.
        assert_eq!(probe(&log, "SOCKETS"), SOCKET, "{what}");
    }

    // Give the node's CPUs back to the other tests; the namespace goes in the background.
    let deleted = node.cp.kubectl(
        &[
            "delete",
            "-k",
            &manifests.display().to_string(),
            "--wait=false",
        ],
        None,
    );
    assert!(deleted.status.success());
}
