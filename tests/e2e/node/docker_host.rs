//! Docker behind `DOCKER_HOST` with a daemon on the host, as SKA's `docker-for-gitlab`
//! unit runs it (a socket in the shared /var/run: `docker.mount: file`): the build
//! container reaches it (`/_ping`, `/version`, the docker CLI) and sees no other socket
//! of the host; a build image that runs as uid 1000 reaches it only when the policy
//! names the socket's group (`socketGroup`), which the webhook adds to the pod's
//! `supplementalGroups`; the socket's volume is named after the socket.

use serde_json::json;

use super::{DOCKER_PROBE, build_pod, probe, ska, ska_shipped};
use crate::support::e2e::*;

#[tokio::test]
#[ignore = "e2e on a real node: needs root, KUBEBUILDER_ASSETS with kubelet and kube-controller-manager, and the packages docs/e2e.md lists"]
async fn builds_reach_the_host_daemon_through_its_socket_file_and_nothing_else() {
    let node = Node::take_turn().await;
    let host = node.host_docker().await;
    node.webhook("ska", &ska(host.gid)).await;
    node.webhook("ska-shipped", &ska_shipped()).await;
    let ska_ns = node.namespace("node-docker-host", "ska", &[]).await;
    // Another socket in the host's /var/run, beside the daemon's: jobs must not see it.
    let decoy = Decoy::bind();
    let shipped = node
        .namespace("node-docker-host-shipped", "ska-shipped", &[])
        .await;

    let root = ska_ns
        .create_pod(&build_pod("as-root", DOCKER_CLI, DOCKER_PROBE))
        .await
        .expect("the root job");
    let non_root = ska_ns
        .create_pod(&build_pod("as-uid-1000", DOCKER_CLI_NONROOT, DOCKER_PROBE))
        .await
        .expect("the uid 1000 job");
    let non_root_shipped = shipped
        .create_pod(&build_pod("as-uid-1000", DOCKER_CLI_NONROOT, DOCKER_PROBE))
        .await
        .expect("the uid 1000 job under the shipped policy");

    // What the webhook stored: the socket file (type Socket), read-only, in a volume
    // named after it, and the socket's group only where the policy names it.
    for (stored, groups) in [
        (&root, json!([host.gid])),
        (&non_root, json!([host.gid])),
        (&non_root_shipped, json!(null)),
    ] {
        let name = &stored["metadata"]["name"];
        let volume = stored["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["hostPath"]["path"] == HOST_DOCKER_SOCKET)
            .unwrap_or_else(|| panic!("{name}: no volume of the socket"));
        assert_eq!(volume["name"], "docker-for-gitlab", "{name}");
        assert_eq!(volume["hostPath"]["type"], "Socket", "{name}");
        assert!(
            container(stored, "build")["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == HOST_DOCKER_SOCKET && m["readOnly"] == true),
            "{name}: the socket mounted read-only in build"
        );
        assert_eq!(
            stored["spec"]["securityContext"]["supplementalGroups"], groups,
            "{name}"
        );
    }

    let server = format!(
        "server={}",
        String::from_utf8_lossy(
            &std::process::Command::new("dockerd")
                .arg("--version")
                .output()
                .expect("dockerd --version")
                .stdout
        )
        .split_whitespace()
        .nth(2)
        .expect("Docker version X,")
        .trim_end_matches(',')
    );

    for (ns, name) in [(&ska_ns, "as-root"), (&ska_ns, "as-uid-1000")] {
        let done = ns.finished(name).await;
        assert_eq!(done["status"]["phase"], "Succeeded", "{name}");
        let log = ns.logs(name, "build").await;
        assert_eq!(probe(&log, "PING"), "OK", "{name}:\n{log}");
        assert!(probe(&log, "VERSION").contains("\"ApiVersion\""), "{log}");
        assert!(probe(&log, "CLI").contains(&server), "{name}:\n{log}");
        assert_eq!(probe(&log, "SOCKETS"), HOST_DOCKER_SOCKET, "{name}:\n{log}");
        assert!(decoy.path.exists());
        if name == "as-uid-1000" {
            let id = probe(&log, "ID");
            assert!(id.starts_with("uid=1000"), "{id}");
            assert!(
                id.contains(&format!("{}", host.gid)),
                "the socket's group: {id}"
            );
        }
    }

    // Without socketGroup, the non-root build is refused by the socket's permissions.
    shipped.finished("as-uid-1000").await;
    let log = shipped.logs("as-uid-1000", "build").await;
    assert!(probe(&log, "ID").starts_with("uid=1000"), "{log}");
    assert!(
        probe(&log, "PING").contains("Couldn't connect to server"),
        "{log}"
    );
    assert!(probe(&log, "CLI").contains("permission denied"), "{log}");
}

/// A unix socket listening in the host's /var/run while the test runs (node-down.sh
/// removes it if the test dies first).
struct Decoy {
    path: std::path::PathBuf,
    _listener: std::os::unix::net::UnixListener,
}

impl Decoy {
    fn bind() -> Decoy {
        let path = std::path::PathBuf::from(DECOY_SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        Decoy {
            path,
            _listener: listener,
        }
    }
}

impl Drop for Decoy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
