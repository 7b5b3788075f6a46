//! Ephemeral containers added to a job pod (`pods/ephemeralcontainers`, `kubectl
//! debug`), judged against the policy's `ephemeralContainers` (issue 25, point 3). Such a
//! container runs on the job's node, may mount the pod's volumes and sees the NVIDIA
//! toolkit's variables: a privileged one with `NVIDIA_VISIBLE_DEVICES=all` mounting the
//! pod's Docker socket volume was added to a job pod, and nothing reviewed it.
//!
//! Under `restricted` (the default) a new ephemeral container may not be privileged,
//! add capabilities, allow privilege escalation, unmask `/proc`, run unconfined by
//! seccomp or AppArmor, take an SELinux type other than the container ones, or be a
//! Windows host process; may not carry a `NVIDIA_*` variable (but CUDA's driver
//! capabilities, as in `nvidia`) nor an `envFrom` that could set one; and may not mount
//! any hostPath volume nor the pod's Docker socket however it is shared. `deny` refuses
//! every one, `allow` reviews none.
//!
//! At admission only the containers the update adds are judged (Kubernetes never lets
//! one be changed or removed): one added while the policy allowed it does not block the
//! next. [`check`] judges every ephemeral container of a stored pod, for `audit`.

use std::collections::BTreeMap;

use super::view::{EphemeralContainer, Pod};
use crate::policy::{DockerMode, EphemeralContainers, Policy};

/// SELinux types a container may take (Pod Security's baseline level).
const SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// The problems of every ephemeral container of `pod` under the policy, one line per
/// container that has any (`ephemeral container NAME: …`); empty when all are fine.
/// For `audit`, which judges stored pods.
pub fn check(policy: &Policy, pod: &Pod<'_>) -> Vec<String> {
    judge(policy, pod, |_| true)
}

/// As [`check`], for the ephemeral containers `pod` has and `old` had not: the ones an
/// UPDATE of `pods/ephemeralcontainers` adds.
pub(super) fn check_added(policy: &Policy, pod: &Pod<'_>, old: Option<&Pod<'_>>) -> Vec<String> {
    let before: Vec<&str> = old
        .and_then(|o| o.spec().ephemeral_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| c.name.as_ref())
        .collect();
    judge(policy, pod, |c| !before.contains(&c.name.as_ref()))
}

/// The denial message for `problems` (from [`check_added`]).
pub(super) fn message(policy: &Policy, problems: &[String]) -> String {
    match policy.ephemeral_containers {
        EphemeralContainers::Restricted => format!(
            "{}; ephemeralContainers: restricted in the policy (docs/escapes.md)",
            problems.join("; ")
        ),
        _ => problems.join("; "),
    }
}

fn judge(
    policy: &Policy,
    pod: &Pod<'_>,
    judged: impl Fn(&EphemeralContainer<'_>) -> bool,
) -> Vec<String> {
    let containers = pod
        .spec()
        .ephemeral_containers
        .as_deref()
        .unwrap_or_default();
    let volumes = confining_volumes(policy, pod);
    containers
        .iter()
        .filter(|c| judged(c))
        .filter_map(|c| {
            let problems = match policy.ephemeral_containers {
                EphemeralContainers::Allow => Vec::new(),
                EphemeralContainers::Deny => {
                    vec!["ephemeralContainers is deny in the policy".to_string()]
                }
                EphemeralContainers::Restricted => restricted(c, &volumes),
            };
            (!problems.is_empty())
                .then(|| format!("ephemeral container {}: {}", c.name, problems.join(", ")))
        })
        .collect()
}

/// What one container does that `restricted` refuses.
fn restricted(c: &EphemeralContainer<'_>, volumes: &BTreeMap<&str, String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(sc) = &c.security_context {
        if sc.privileged == Some(true) {
            out.push("privileged".to_string());
        }
        let added: Vec<&str> = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|c| c.0.as_ref())
            .collect();
        if !added.is_empty() {
            out.push(format!("adds capabilities {}", added.join(" ")));
        }
        if sc.allow_privilege_escalation == Some(true) {
            out.push("allowPrivilegeEscalation: true".to_string());
        }
        if let Some(p) = sc.proc_mount.as_deref().filter(|p| *p != "Default") {
            out.push(format!("procMount {}", super::shorten(p).trim_matches('"')));
        }
        for (field, profile) in [
            ("seccompProfile", &sc.seccomp_profile),
            ("appArmorProfile", &sc.app_armor_profile),
        ] {
            if profile.as_ref().and_then(|p| p.kind.as_deref()) == Some("Unconfined") {
                out.push(format!("{field} Unconfined"));
            }
        }
        if let Some(t) = sc
            .se_linux_options
            .as_ref()
            .and_then(|o| o.kind.as_deref())
            .filter(|t| !t.is_empty() && !SELINUX_TYPES.contains(t))
        {
            out.push(format!(
                "seLinuxOptions type {}",
                super::shorten(t).trim_matches('"')
            ));
        }
        if sc.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
            out.push("windowsOptions.hostProcess".to_string());
        }
    }
    let nvidia = c
        .env
        .as_ref()
        .map(|e| e.nvidia.as_slice())
        .unwrap_or_default();
    for var in nvidia.iter().filter(|v| super::nvidia::removed(v)) {
        out.push(format!("env {}", var.name));
    }
    for source in c.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        if super::view::NVIDIA_ENV_PREFIX.starts_with(prefix)
            || prefix.starts_with(super::view::NVIDIA_ENV_PREFIX)
        {
            out.push(format!(
                "envFrom with prefix {} (it may set NVIDIA_* variables)",
                super::shorten(prefix)
            ));
        }
    }
    for mount in c.volume_mounts.iter().flatten() {
        if let Some(what) = volumes.get(mount.name.as_ref()) {
            out.push(format!("mounts volume {} ({what})", mount.name));
        }
    }
    out
}

/// The pod's volumes an ephemeral container may not mount, and why: every hostPath
/// volume, and every volume that holds the pod's Docker socket: the policy's own
/// (socket mode), and any volume a container of the pod mounts as a Docker socket (at a
/// path ending in `docker.sock`, or at the policy's socket directory), whatever its kind
/// (an emptyDir a dind service writes its socket to).
fn confining_volumes<'p>(policy: &Policy, pod: &'p Pod<'_>) -> BTreeMap<&'p str, String> {
    let spec = pod.spec();
    let (policy_volume, socket_dir) = match &policy.docker.mode {
        DockerMode::Socket {
            volume_name,
            host_path,
            ..
        } => (Some(volume_name.as_str()), Some(host_path.as_str())),
        _ => (None, None),
    };
    let socket_mounts: Vec<&str> = spec
        .containers
        .iter()
        .chain(&spec.init_containers)
        .flatten()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .filter(|m| {
            let path = m.mount_path.trim_end_matches('/');
            path.ends_with("docker.sock") || Some(path) == socket_dir
        })
        .map(|m| m.name.as_ref())
        .collect();
    let mut out = BTreeMap::new();
    for volume in spec.volumes.iter().flatten() {
        let name = volume.name.as_ref();
        let socket = Some(name) == policy_volume || socket_mounts.contains(&name);
        let host = volume.host_path.as_ref().map(|h| h.path.as_ref());
        let why = match (socket, host) {
            (true, Some(path)) => format!("the pod's Docker socket, hostPath {path}"),
            (true, None) => "the pod's Docker socket".to_string(),
            (false, Some(path)) if path.trim_end_matches('/').ends_with("docker.sock") => {
                format!("the pod's Docker socket, hostPath {path}")
            }
            (false, Some(path)) => format!("hostPath {path}"),
            (false, None) => continue,
        };
        out.insert(name, why);
    }
    out
}
