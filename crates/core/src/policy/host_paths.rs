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
mod tests;
