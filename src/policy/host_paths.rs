//! Which host paths the policy may hand to every CI job: `docker.socketPath` and, in
//! `mount: directory`, the socket's directory.
//!
//! A hostPath mount is the node's own file system inside a container the job controls.
//! A read-only mount does not stop `connect()` on a socket, so mounting a shared
//! directory such as `/var/run` gives every job the node's containerd and Docker sockets:
//! root on the node. Two rules, checked on the normalised path:
//!
//! - **Sensitive trees** (any mode that mounts): the socket may not lie at or under a
//!   tree that holds the kernel's interfaces, the node's configuration and credentials,
//!   people's files, the node's software, container runtimes' state or other pods' data
//!   ([`SENSITIVE_TREES`]). Mounting a socket there, even as a single file, hands a job
//!   something that is not the CI Docker daemon (the kubelet's device-plugin socket, the
//!   container runtime, syslog).
//! - **Shared directories** (`mount: directory`): the directory mounted must hold nothing
//!   but the daemon's socket, so it may not be `/`, a top-level directory, or one of the
//!   directories that many programs share ([`SHARED_DIRECTORIES`]).
//!
//! `/var/run` and `/var/lock` are symbolic links to `/run` and `/run/lock` on every
//! current distribution, so a path under them is compared as the path under `/run`. The
//! rules are lexical: the webhook cannot see the node's file system, and a symbolic link
//! an administrator made elsewhere on the node is theirs to answer for.

/// Trees a socket path may not be in, whatever the mount mode (after `/var/run` → `/run`).
pub const SENSITIVE_TREES: &[&str] = &[
    "/proc",               // kernel interfaces; /proc/1/root is the node's root
    "/sys",                // kernel and device settings
    "/dev",                // devices; its only usual socket is /dev/log (syslog)
    "/boot",               // kernel and boot loader
    "/etc",                // node configuration, Kubernetes PKI (/etc/kubernetes)
    "/home",               // people's files and keys
    "/root",               // root's files and keys
    "/usr",                // the node's software
    "/var/lib/kubelet",    // other pods' volumes and tokens; the device-plugin socket
    "/var/lib/etcd",       // the cluster's data
    "/var/lib/containerd", // container file systems and state
    "/var/lib/docker",     // the node Docker's containers and plugins
    "/var/log",            // other pods' logs
    "/run/containerd",     // the container runtime's socket: root on the node
    "/run/crio",           // the same, for CRI-O
    "/run/secrets",        // credentials mounted for the node's own services
];

/// Directories shared by many programs, never mounted whole (besides `/`, every
/// top-level directory, and every [`SENSITIVE_TREES`] entry).
pub const SHARED_DIRECTORIES: &[&str] = &[
    "/run/user",
    "/run/lock",
    "/run/docker",
    "/run/systemd",
    "/run/dbus",
    "/var/lib",
    "/var/tmp",
    "/var/cache",
    "/var/spool",
    "/var/local",
    "/var/opt",
    "/var/mail",
    "/var/snap",
    "/var/backups",
];

/// A socket path that is not usable as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    /// Not absolute.
    Relative,
    /// Has `.`, `..`, an empty segment or a trailing `/`; `normalised` is the path it
    /// stands for, when there is one below `/`.
    NotNormalised { normalised: Option<String> },
    /// At or under a sensitive tree.
    Sensitive { tree: &'static str },
}

/// The lexical normal form of an absolute path: no `.`, `..` or empty segments, no
/// trailing `/`. `None` for a relative path. `..` at the root stays at the root.
pub fn normalise(path: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    let mut segments: Vec<&str> = Vec::new();
    for segment in rest.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    Some(format!("/{}", segments.join("/")))
}

/// Checks a socket path: absolute, already normalised (so what is mounted is what the
/// administrator reads), the path of a file (not `/`), and outside [`SENSITIVE_TREES`].
pub fn check_socket_path(path: &str) -> Result<(), PathProblem> {
    let normalised = normalise(path).ok_or(PathProblem::Relative)?;
    if let Some(tree) = sensitive_tree(&normalised) {
        return Err(PathProblem::Sensitive { tree });
    }
    if normalised != path || normalised == "/" {
        return Err(PathProblem::NotNormalised {
            normalised: (normalised != "/").then_some(normalised),
        });
    }
    Ok(())
}

/// The sensitive tree `path` (normalised) is at or under, if any.
pub fn sensitive_tree(path: &str) -> Option<&'static str> {
    let path = canonical(path);
    SENSITIVE_TREES
        .iter()
        .copied()
        .find(|tree| is_within(&path, tree))
}

/// Whether a (normalised) directory is shared, and so never mounted whole.
pub fn is_shared_directory(dir: &str) -> bool {
    let dir = canonical(dir);
    let depth = dir.split('/').filter(|s| !s.is_empty()).count();
    depth <= 1
        || SHARED_DIRECTORIES.contains(&dir.as_str())
        || SENSITIVE_TREES.iter().any(|tree| is_within(&dir, tree))
        // Each user's runtime directory holds that user's session sockets.
        || dir
            .strip_prefix("/run/user/")
            .is_some_and(|uid| !uid.contains('/'))
}

/// Whether `path` is `tree` or inside it, segment-wise (`/etc2` is not in `/etc`).
pub fn is_within(path: &str, tree: &str) -> bool {
    path.strip_prefix(tree)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `/var/run/…` as `/run/…` and `/var/lock/…` as `/run/lock/…`: the same directories.
fn canonical(path: &str) -> String {
    for (alias, target) in [("/var/run", "/run"), ("/var/lock", "/run/lock")] {
        if is_within(path, alias) {
            return format!("{target}{}", &path[alias.len()..]);
        }
    }
    path.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_removes_dots_empty_segments_and_trailing_slashes() {
        for (input, want) in [
            ("/var/run/x.sock", "/var/run/x.sock"),
            ("//var//run/x.sock", "/var/run/x.sock"),
            ("/var/run/x/", "/var/run/x"),
            ("/var/./run/x", "/var/run/x"),
            ("/var/run/ci/../../../etc/x", "/etc/x"),
            ("/../../x", "/x"),
            ("/", "/"),
        ] {
            assert_eq!(normalise(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(normalise("var/run/x"), None);
        assert_eq!(normalise(""), None);
    }

    #[test]
    fn sockets_in_sensitive_trees_are_refused_in_every_spelling() {
        for (path, tree) in [
            ("/proc/1/root/run/docker.sock", "/proc"),
            ("/sys/fs/x.sock", "/sys"),
            ("/dev/log", "/dev"),
            ("/boot/x.sock", "/boot"),
            ("/etc/docker.sock", "/etc"),
            ("/etc", "/etc"),
            ("/home/ci/docker.sock", "/home"),
            ("/root/docker.sock", "/root"),
            ("/usr/local/docker.sock", "/usr"),
            (
                "/var/lib/kubelet/device-plugins/kubelet.sock",
                "/var/lib/kubelet",
            ),
            ("/var/lib/etcd/x.sock", "/var/lib/etcd"),
            ("/var/lib/docker/x.sock", "/var/lib/docker"),
            ("/var/log/pods/x.sock", "/var/log"),
            ("/run/containerd/containerd.sock", "/run/containerd"),
            ("/var/run/containerd/containerd.sock", "/run/containerd"),
            ("/var/run/crio/crio.sock", "/run/crio"),
            // Spelled around the check: normalised first.
            ("/var/run/ci/../../../etc/docker.sock", "/etc"),
            ("//etc/docker.sock", "/etc"),
            ("/var/lib/./kubelet/x.sock", "/var/lib/kubelet"),
        ] {
            assert_eq!(
                check_socket_path(path),
                Err(PathProblem::Sensitive { tree }),
                "{path}"
            );
        }
    }

    #[test]
    fn look_alike_names_are_not_inside_a_tree() {
        for path in [
            "/etcd-socket/docker.sock",
            "/var/lib/docker-for-gitlab/docker.sock",
            "/var/lib/kubelet2/x.sock",
            "/var/run/docker-for-gitlab.sock",
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/var/run/ci-dind/docker.sock",
        ] {
            assert_eq!(check_socket_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn relative_and_unnormalised_paths_are_refused_with_the_normal_form() {
        assert_eq!(
            check_socket_path("var/run/x.sock"),
            Err(PathProblem::Relative)
        );
        assert_eq!(
            check_socket_path("/var/run//ci-dind/docker.sock"),
            Err(PathProblem::NotNormalised {
                normalised: Some("/var/run/ci-dind/docker.sock".into())
            })
        );
        assert_eq!(
            check_socket_path("/var/run/ci-dind/"),
            Err(PathProblem::NotNormalised {
                normalised: Some("/var/run/ci-dind".into())
            })
        );
        assert_eq!(
            check_socket_path("/x/.."),
            Err(PathProblem::NotNormalised { normalised: None })
        );
        assert_eq!(
            check_socket_path("/"),
            Err(PathProblem::NotNormalised { normalised: None })
        );
    }

    #[test]
    fn shared_directories_are_the_root_top_level_and_the_listed_ones() {
        for dir in [
            "/",
            "/run",
            "/var/run",
            "/var",
            "/var/lib",
            "/tmp",
            "/dev",
            "/etc",
            "/home",
            "/root",
            "/usr",
            "/proc",
            "/sys",
            "/boot",
            "/opt",
            "/srv",
            "/mnt",
            "/var/tmp",
            "/run/user",
            "/run/user/1000",
            "/var/run/user/0",
            "/run/lock",
            "/var/lock",
            "/run/docker",
            "/var/run/docker",
            "/etc/docker",
            "/var/lib/kubelet/pods",
            "/usr/local/run",
        ] {
            assert!(is_shared_directory(dir), "{dir} is shared");
        }
        for dir in [
            "/var/run/ci-dind",
            "/run/ci-dind",
            "/var/run/docker-for-gitlab",
            "/run/user/1000/docker",
            "/var/lib/ci-dind-socket",
        ] {
            assert!(!is_shared_directory(dir), "{dir} may be dedicated");
        }
    }

    /// The policy file with `docker` set to `docker`, one class with explicit ceilings.
    fn policy(docker: &str) -> Result<crate::policy::Policy, String> {
        let yaml = format!(
            "defaultClass: a\ndocker: {docker}\nclasses:\n  a: {{ max: {{ cpu: null, memory: null }} }}\n"
        );
        crate::policy::Policy::parse(&yaml, "p.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_shared_socket_directory_is_refused_naming_it_and_suggesting_file_mode() {
        for (docker, dir) in [
            (
                "{ socketPath: /var/run/docker-for-gitlab.sock }",
                "/var/run",
            ),
            (
                "{ mode: socket, mount: directory, socketPath: /run/docker.sock }",
                "/run",
            ),
            ("{ socketPath: /tmp/docker.sock }", "/tmp"),
            ("{ socketPath: /docker.sock }", "/"),
            ("{ socketPath: /var/lib/docker.sock }", "/var/lib"),
            ("{ socketPath: /opt/docker.sock }", "/opt"),
            (
                "{ socketPath: /run/user/1000/docker.sock }",
                "/run/user/1000",
            ),
        ] {
            let error = policy(docker).expect_err(docker);
            assert!(error.starts_with("p.yaml:2:"), "{error}");
            assert!(
                error.contains(&format!("is in {dir}, a directory other programs share")),
                "{error}"
            );
            assert!(error.contains("`mount: file`"), "{error}");
        }
    }

    #[test]
    fn file_mode_mounts_a_socket_in_a_shared_directory() {
        let p =
            policy("{ mount: file, socketPath: /var/run/docker-for-gitlab.sock }").expect("valid");
        assert_eq!(
            p.docker.mode,
            crate::policy::DockerMode::Socket {
                socket_path: "/var/run/docker-for-gitlab.sock".into(),
                mount: crate::policy::SocketMount::File,
                host_path: "/var/run/docker-for-gitlab.sock".into(),
                volume_name: "ci-dind".into(),
            }
        );
    }

    #[test]
    fn a_dedicated_directory_may_be_mounted() {
        let p = policy("{ socketPath: /var/run/ci-dind/docker.sock }").expect("valid");
        let crate::policy::DockerMode::Socket { host_path, .. } = &p.docker.mode else {
            panic!("socket mode");
        };
        assert_eq!(host_path, "/var/run/ci-dind");
    }

    #[test]
    fn sensitive_trees_are_refused_in_file_mode_too() {
        for path in [
            "/proc/1/root/var/run/docker.sock",
            "/etc/docker.sock",
            "/home/ci/docker.sock",
            "/var/lib/kubelet/device-plugins/kubelet.sock",
            "/var/run/containerd/containerd.sock",
            "/var/run/ci-dind/../../../etc/docker.sock",
        ] {
            for mount in ["file", "directory"] {
                let error =
                    policy(&format!("{{ mount: {mount}, socketPath: {path:?} }}")).expect_err(path);
                assert!(
                    error.contains("which holds the node's own files"),
                    "{error}"
                );
            }
        }
    }

    #[test]
    fn relative_and_unnormalised_socket_paths_are_refused() {
        let error =
            policy("{ mount: file, socketPath: var/run/docker.sock }").expect_err("relative");
        assert!(error.contains("is not an absolute path"), "{error}");
        let error =
            policy("{ mount: file, socketPath: /var/run//docker.sock }").expect_err("double slash");
        assert!(error.contains("write \"/var/run/docker.sock\""), "{error}");
        let error = policy("{ socketPath: / }").expect_err("root");
        assert!(
            error.contains("is not the path of a socket file"),
            "{error}"
        );
        let error = policy("{ mode: tcp, mount: file }").expect_err("mount without socket");
        assert!(
            error.contains("docker.mount: applies to mode: socket only"),
            "{error}"
        );
        let error = policy("{ mount: socket }").expect_err("unknown mount");
        assert!(
            error.contains("unknown variant `socket`, expected one of directory, file"),
            "{error}"
        );
    }
}
