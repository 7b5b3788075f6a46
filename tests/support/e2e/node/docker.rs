//! Docker daemons for the jobs on the test node: a daemon on the host like SKA's
//! `docker-for-gitlab` systemd unit, and the image of the node Docker DaemonSet
//! (manifests/node-docker), made locally (docs/e2e.md says how it differs).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::super::process::Component;
use super::{Node, import_images, run, spawn};

/// Where SKA's `docker-for-gitlab` unit puts its socket: in the shared /var/run, so the
/// policy mounts the socket file (`mount: file`).
pub const HOST_DOCKER_SOCKET: &str = "/var/run/docker-for-gitlab.sock";
/// A socket the Docker tests put beside it, which no job may see.
pub const DECOY_SOCKET: &str = "/var/run/ci-pod-webhook-e2e-decoy.sock";

/// A `dockerd` on the host, listening on [`HOST_DOCKER_SOCKET`], group `docker`.
pub struct HostDocker {
    pub socket: PathBuf,
    /// The gid of the socket's group (the host's `docker` group).
    pub gid: u32,
    _daemon: Component,
}

impl Node {
    /// The host Docker daemon, started on first use. Like SKA's unit (`dockerd --host
    /// unix:///var/run/docker-for-gitlab.sock --group docker` with its own data and exec
    /// roots), except that it leaves the host's network alone (`--bridge=none
    /// --iptables=false --ip-forward=false --ip-masq=false`: its containers get only a
    /// loopback interface) and keeps its data in the node's files. (Docker 20.10 writes
    /// its trust key to /etc/docker/key.json: node-down.sh removes it if the run made it.)
    pub async fn host_docker(&self) -> &HostDocker {
        self.host_docker
            .get_or_init(|| async { self.start_host_docker().await })
            .await
    }

    async fn start_host_docker(&self) -> HostDocker {
        let socket = PathBuf::from(HOST_DOCKER_SOCKET);
        assert!(
            !socket.exists(),
            "{HOST_DOCKER_SOCKET} exists: another Docker daemon uses the socket the tests' \
             host daemon needs"
        );
        let gid = docker_group();
        let exec_root = "/run/e2e-docker-for-gitlab";
        let data_root = self.state.join("dockerd-docker-for-gitlab-data");
        std::fs::write(
            self.state.join("docker-for-gitlab.env"),
            format!(
                "DOCKER_SOCKET={HOST_DOCKER_SOCKET}\nDOCKER_EXEC_ROOT={exec_root}\n\
                 DOCKER_CGROUP_PARENT=/e2e-docker-for-gitlab\n"
            ),
        )
        .expect("write docker-for-gitlab.env");
        let mut command = Command::new("dockerd");
        command
            .arg(format!("--host=unix://{HOST_DOCKER_SOCKET}"))
            .arg("--group=docker")
            .arg(format!("--data-root={}", data_root.display()))
            .arg(format!("--exec-root={exec_root}"))
            .arg(format!("--pidfile={exec_root}/dockerd.pid"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--cgroup-parent=/e2e-docker-for-gitlab",
            ]);
        let daemon = spawn(
            "dockerd-docker-for-gitlab",
            command,
            &self.state,
            &self.watchdog,
        );
        daemon
            .wait_until(Duration::from_secs(60), || async {
                ping(Path::new(HOST_DOCKER_SOCKET)).is_some_and(|body| body.ends_with("OK"))
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        HostDocker {
            socket,
            gid,
            _daemon: daemon,
        }
    }

    /// Builds the docker:28.4.0-dind stand-in (scripts/node/images.sh) and imports it,
    /// once.
    pub async fn dind_image(&self) {
        self.dind_image
            .get_or_init(|| async {
                let images = self.state.join("images");
                run(
                    Command::new(super::super::repo_file("scripts/node/images.sh"))
                        .arg(&images)
                        .arg("dind"),
                );
                import_images(&self.containerd_socket, &images, &["dind"]);
            })
            .await;
    }
}

/// The gid of the host's `docker` group (Debian's docker.io makes it; its number differs
/// from machine to machine).
pub fn docker_group() -> u32 {
    let group = run(Command::new("getent").args(["group", "docker"]));
    String::from_utf8_lossy(&group.stdout)
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .expect("the gid of group docker")
}

/// `GET /_ping` on a Docker socket: the response, or `None` if nothing answered.
pub fn ping(socket: &Path) -> Option<String> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.trim_end().to_string())
}
