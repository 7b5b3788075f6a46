//! `docker`: how job containers reach the node's Docker daemon (a socket mounted from
//! the host, or TCP with optional TLS), and the defaults of each mode. A socket path is
//! checked against the host-path rules of `host_paths.rs`. Absent from the policy:
//! socket mode on the CI daemon's own directory, `/var/run/ci-dind`, for `build`. Paired
//! with `docker` in `mutate/`.

use serde::Deserialize;

use super::host_paths::{self, PathProblem};
use super::names::{is_dns_label, is_dns_subdomain};
use super::raw::S;
use super::validate::Validator;

const DEFAULT_SOCKET_PATH: &str = "/var/run/ci-dind/docker.sock";
const DEFAULT_SOCKET_VOLUME: &str = "ci-dind";
const DEFAULT_TLS_MOUNT: &str = "/certs/client";
const DEFAULT_TLS_VOLUME: &str = "ci-dind-certs";

#[derive(Debug, Clone)]
pub struct Docker {
    pub mode: DockerMode,
    /// Containers that get `DOCKER_HOST`.
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerMode {
    /// Mount the node daemon's socket (or its directory) from the host.
    Socket {
        socket_path: String,
        mount: SocketMount,
        /// What is mounted, at the same path in the container: `socket_path` itself
        /// (`File`) or its directory (`Directory`).
        host_path: String,
        volume_name: String,
        /// The socket's group: added to the pod's `supplementalGroups` when the socket
        /// is mounted, so build images that run as non-root may connect to it.
        group: Option<u32>,
    },
    /// Reach the node daemon over TCP at the node's IP.
    Tcp {
        port: u16,
        tls: Option<DockerTls>,
    },
    Off,
}

/// What socket mode mounts (see docs/docker.md for the trade-off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketMount {
    /// The socket's directory, which must be dedicated to it: survives daemon restarts.
    Directory,
    /// The socket file (hostPath type `Socket`): a restarted daemon's new socket reaches
    /// only jobs started after it.
    File,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerTls {
    pub secret_name: String,
    pub mount_path: String,
    pub volume_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDocker {
    pub mode: Option<S<RawDockerMode>>,
    pub containers: Option<S<Vec<String>>>,
    pub socket_path: Option<S<String>>,
    pub mount: Option<S<RawSocketMount>>,
    pub volume_name: Option<S<String>>,
    pub socket_group: Option<S<i64>>,
    pub tcp: Option<RawDockerTcp>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawDockerMode {
    Socket,
    Tcp,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawSocketMount {
    Directory,
    File,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDockerTcp {
    pub port: Option<S<u16>>,
    pub tls: Option<RawDockerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDockerTls {
    pub secret_name: S<String>,
    pub mount_path: Option<S<String>>,
}

impl Validator<'_> {
    pub(super) fn docker(&mut self, raw: Option<RawDocker>) -> Docker {
        let Some(raw) = raw else {
            return Docker {
                mode: DockerMode::Socket {
                    socket_path: DEFAULT_SOCKET_PATH.to_string(),
                    mount: SocketMount::Directory,
                    host_path: "/var/run/ci-dind".to_string(),
                    volume_name: DEFAULT_SOCKET_VOLUME.to_string(),
                    group: None,
                },
                containers: vec!["build".to_string()],
            };
        };
        let containers = match raw.containers {
            Some(c) => {
                if c.value.is_empty() || !c.value.iter().all(|n| is_dns_label(n)) {
                    self.problem(
                        &c,
                        "docker.containers: give one or more container names (DNS labels)",
                    );
                }
                c.value
            }
            None => vec!["build".to_string()],
        };
        let volume_name = raw
            .volume_name
            .as_ref()
            .map(|v| self.dns_label(v, "docker.volumeName"));
        let mode = match raw.mode.as_ref().map(|m| m.value) {
            Some(RawDockerMode::Socket) | None => {
                let group = raw.socket_group.as_ref().and_then(|g| self.socket_group(g));
                self.socket(
                    raw.socket_path.as_ref(),
                    raw.mount.as_ref(),
                    volume_name,
                    group,
                )
            }
            Some(RawDockerMode::Tcp) => {
                let tcp = raw.tcp.unwrap_or(RawDockerTcp {
                    port: None,
                    tls: None,
                });
                let tls = tcp.tls.map(|tls| {
                    if !is_dns_subdomain(&tls.secret_name.value) {
                        self.problem(
                            &tls.secret_name,
                            format!(
                                "docker.tcp.tls.secretName: {:?} is not a valid Secret name",
                                tls.secret_name.value
                            ),
                        );
                    }
                    let mount_path = match &tls.mount_path {
                        Some(p) if parent_dir(&p.value).is_none() => {
                            self.problem(
                                p,
                                "docker.tcp.tls.mountPath: must be an absolute, normalised path",
                            );
                            p.value.clone()
                        }
                        Some(p) => p.value.clone(),
                        None => DEFAULT_TLS_MOUNT.to_string(),
                    };
                    DockerTls {
                        secret_name: tls.secret_name.value,
                        mount_path,
                        volume_name: DEFAULT_TLS_VOLUME.to_string(),
                    }
                });
                let default_port = if tls.is_some() { 2376 } else { 2375 };
                let port = match tcp.port {
                    Some(p) if p.value == 0 => {
                        self.problem(&p, "docker.tcp.port: must be between 1 and 65535");
                        default_port
                    }
                    Some(p) => p.value,
                    None => default_port,
                };
                DockerMode::Tcp { port, tls }
            }
            Some(RawDockerMode::Off) => DockerMode::Off,
        };
        if let Some(m) = &raw.mount
            && !matches!(mode, DockerMode::Socket { .. })
        {
            self.problem(m, "docker.mount: applies to mode: socket only; remove it");
        }
        if let Some(g) = &raw.socket_group
            && !matches!(mode, DockerMode::Socket { .. })
        {
            self.problem(
                g,
                "docker.socketGroup: applies to mode: socket only; remove it",
            );
        }
        Docker { mode, containers }
    }

    /// Socket mode: the path checked against the host-path rules (`host_paths.rs`).
    fn socket(
        &mut self,
        raw_path: Option<&S<String>>,
        raw_mount: Option<&S<RawSocketMount>>,
        volume_name: Option<String>,
        group: Option<u32>,
    ) -> DockerMode {
        let socket_path = raw_path.map_or(DEFAULT_SOCKET_PATH, |p| p.value.as_str());
        let mount = match raw_mount.map(|m| m.value) {
            Some(RawSocketMount::File) => SocketMount::File,
            Some(RawSocketMount::Directory) | None => SocketMount::Directory,
        };
        let dir = socket_path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let host_path = match mount {
            SocketMount::File => socket_path,
            SocketMount::Directory => dir,
        };
        if let Some(p) = raw_path {
            let what = "docker.socketPath";
            match host_paths::check_socket_path(socket_path) {
                Err(PathProblem::Relative) => self.problem(p, format!("{what}: {socket_path:?} is not an absolute path; write the node daemon's socket as it is on the node, such as {DEFAULT_SOCKET_PATH}")),
                Err(PathProblem::NotNormalised { normalised: Some(n) }) => self.problem(p, format!("{what}: {socket_path:?} is not a normalised path (no ., .., // or trailing /); write {n:?}")),
                Err(PathProblem::NotNormalised { normalised: None }) => self.problem(p, format!("{what}: {socket_path:?} is not the path of a socket file, such as {DEFAULT_SOCKET_PATH}")),
                Err(PathProblem::Sensitive { tree }) => self.problem(p, format!("{what}: {socket_path:?} is inside {tree}, which holds the node's own files or other pods' data; no CI job may mount anything from there. Run the CI Docker daemon with its socket elsewhere, such as {DEFAULT_SOCKET_PATH}")),
                Ok(()) if mount == SocketMount::Directory && host_paths::is_shared_directory(dir) => {
                    let dir = if dir.is_empty() { "/" } else { dir };
                    self.problem(p, format!("{what}: {socket_path:?} is in {dir}, a directory other programs share; mount: directory (the default) would give every CI job all of {dir} (other daemons' sockets included: root on the node). Add `mount: file` to mount only the socket, or move the socket into a directory of its own, such as {DEFAULT_SOCKET_PATH}"));
                }
                Ok(()) => {}
            }
        }
        DockerMode::Socket {
            socket_path: socket_path.to_string(),
            mount,
            host_path: host_path.to_string(),
            volume_name: volume_name.unwrap_or_else(|| socket_volume_name(host_path, mount)),
            group,
        }
    }

    /// `socketGroup`: a group id a pod may add (Kubernetes takes 0 to 2^31 - 1), not
    /// root's group 0, which would give every container of the job pod the files of
    /// group root on everything mounted into it.
    fn socket_group(&mut self, raw: &S<i64>) -> Option<u32> {
        match u32::try_from(raw.value) {
            Ok(gid) if (1..=i32::MAX as u32).contains(&gid) => Some(gid),
            Ok(0) => {
                self.problem(raw, "docker.socketGroup: 0 is root's group, which would give every container of a job pod the files of group root; give the Docker socket a group of its own (dockerd --group) and name its id here");
                None
            }
            _ => {
                self.problem(raw, format!("docker.socketGroup: {} is not a group id; give the numeric id (1 to 2147483647) of the Docker socket's group on the nodes (stat -c %g SOCKET)", raw.value));
                None
            }
        }
    }

    fn dns_label(&mut self, raw: &S<String>, what: &str) -> String {
        if !is_dns_label(&raw.value) {
            self.problem(
                raw,
                format!(
                    "{what}: {:?} is not a DNS label (lower-case letters, digits and -)",
                    raw.value
                ),
            );
        }
        raw.value.clone()
    }
}

/// The socket volume's name when the policy gives none: after what is mounted, so that
/// a pod's volumes say which daemon a job reaches. The socket file's name without
/// `.sock` in `file` mode (`docker-for-gitlab` for /var/run/docker-for-gitlab.sock), the
/// directory's in `directory` mode (`ci-dind` for /var/run/ci-dind), made a DNS label;
/// `docker-socket` if nothing of it is left.
pub fn socket_volume_name(host_path: &str, mount: SocketMount) -> String {
    let last = host_path.rsplit('/').next().unwrap_or_default();
    let base = match mount {
        SocketMount::File => last.strip_suffix(".sock").unwrap_or(last),
        SocketMount::Directory => last,
    };
    let mapped: String = base
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let mut name = String::new();
    for part in mapped.split('-').filter(|p| !p.is_empty()) {
        if name.len() + part.len() + usize::from(!name.is_empty()) > 63 {
            break;
        }
        if !name.is_empty() {
            name.push('-');
        }
        name.push_str(part);
    }
    if name.is_empty() {
        "docker-socket".to_string()
    } else {
        name
    }
}

/// The directory of an absolute, normalised file path (not `/` itself).
fn parent_dir(path: &str) -> Option<&str> {
    let normalised = path.starts_with('/')
        && !path.ends_with('/')
        && path[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if !normalised {
        return None;
    }
    let (dir, _) = path.rsplit_once('/')?;
    (!dir.is_empty()).then_some(dir)
}

#[cfg(test)]
mod tests;
