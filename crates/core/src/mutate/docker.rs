//! `DOCKER_HOST` for the node Docker daemon, in the target containers (default
//! `build`), unless the container already sets it or the job opted out.
//!
//! Socket mode mounts, at the same path in the container, either the socket's directory
//! (`mount: directory`, the default: it survives daemon restarts, so the policy refuses
//! shared directories such as `/var/run`) or the socket file itself (`mount: file`,
//! hostPath type `Socket`). The mount is read-only, which does not stop connecting to the
//! socket but does stop a job from deleting or replacing it. A container that already has
//! a mount at a parent or child of that path gets no mount and no `DOCKER_HOST` (with a
//! warning): one of the two mounts would hide the other. With `socketGroup`, a pod given
//! the socket also gets the socket's group in its `supplementalGroups`, so that a build
//! image running as non-root may connect. See docs/docker.md.

use serde_json::{Value, json};

use super::patch::{Parent, Patch, pointer};
use super::view::{
    Container, DOCKER_CERT_PATH, DOCKER_HOST, DOCKER_TLS_VERIFY, HOST_IP_FIELD, NODE_IP, Pod,
    Volume, VolumeMount,
};
use crate::policy::{DockerMode, Policy, SocketMount};

pub(super) fn apply(policy: &Policy, pod: &Pod<'_>, patch: &mut Patch, warnings: &mut Vec<String>) {
    let Some(containers) = pod.spec().containers.as_deref() else {
        return;
    };
    let mut volumes = Volumes::new(pod);
    let mut given_the_socket = false;
    for (index, container) in containers.iter().enumerate() {
        if !policy
            .docker
            .containers
            .iter()
            .any(|c| *c == container.name)
            || has_env(container, DOCKER_HOST)
        {
            continue;
        }
        match &policy.docker.mode {
            DockerMode::Off => {}
            DockerMode::Socket {
                socket_path,
                mount,
                host_path,
                volume_name,
                ..
            } => {
                let source = Source::Host(host_path, *mount);
                match mounted_at(container, host_path) {
                    Some(m) if volumes.is(m, source) => {}
                    Some(m) => {
                        warnings.push(taken(container, host_path, m));
                        continue;
                    }
                    None => {
                        if let Some(other) = overlapping(container, host_path) {
                            warnings.push(format!(
                                "{}: {} is already mounted at {}, which overlaps {host_path}; {DOCKER_HOST} not set",
                                container.name,
                                super::shorten(&other.name),
                                super::shorten(&other.mount_path),
                            ));
                            continue;
                        }
                        let Some(volume) = volumes.ensure(volume_name, source, warnings) else {
                            continue;
                        };
                        add_mount(patch, index, container, &volume, host_path);
                    }
                }
                env(
                    patch,
                    index,
                    container,
                    vec![json!({"name": DOCKER_HOST, "value": format!("unix://{socket_path}")})],
                );
                given_the_socket = true;
            }
            DockerMode::Tcp { port, tls } => {
                let mut vars = Vec::new();
                match env_value_from_host_ip(container) {
                    Some(true) => {}
                    Some(false) => {
                        warnings.push(format!(
                            "{}: {NODE_IP} is already set to something other than the node IP; {DOCKER_HOST} not set",
                            container.name
                        ));
                        continue;
                    }
                    None => vars.push(json!({"name": NODE_IP, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": HOST_IP_FIELD}}})),
                }
                // NODE_IP must come before DOCKER_HOST for $(NODE_IP) to expand.
                vars.push(
                    json!({"name": DOCKER_HOST, "value": format!("tcp://$({NODE_IP}):{port}")}),
                );
                if let Some(tls) = tls {
                    match mounted_at(container, &tls.mount_path) {
                        Some(m) if volumes.is(m, Source::Secret(&tls.secret_name)) => {}
                        Some(m) => {
                            warnings.push(taken(container, &tls.mount_path, m));
                            continue;
                        }
                        None => {
                            let Some(volume) = volumes.ensure(
                                &tls.volume_name,
                                Source::Secret(&tls.secret_name),
                                warnings,
                            ) else {
                                continue;
                            };
                            add_mount(patch, index, container, &volume, &tls.mount_path);
                        }
                    }
                    if !has_env(container, DOCKER_TLS_VERIFY) {
                        vars.push(json!({"name": DOCKER_TLS_VERIFY, "value": "1"}));
                    }
                    if !has_env(container, DOCKER_CERT_PATH) {
                        vars.push(json!({"name": DOCKER_CERT_PATH, "value": tls.mount_path}));
                    }
                }
                env(patch, index, container, vars);
            }
        }
    }
    volumes.emit(patch);
    if let DockerMode::Socket {
        group: Some(gid), ..
    } = policy.docker.mode
        && given_the_socket
    {
        supplemental_group(pod, patch, gid);
    }
}

/// Adds `gid` to the pod's `securityContext.supplementalGroups` (a set: nothing if it is
/// there already). The field is pod-wide: Kubernetes has no per-container groups.
fn supplemental_group(pod: &Pod<'_>, patch: &mut Patch, gid: u32) {
    let groups = pod
        .spec()
        .security_context
        .as_ref()
        .map(|c| c.supplemental_groups.as_deref());
    match groups {
        Some(Some(groups)) if groups.contains(&i64::from(gid)) => {}
        Some(Some(_)) => patch.append(
            &["spec", "securityContext", "supplementalGroups"],
            Parent::Present,
            vec![json!(gid)],
        ),
        Some(None) => patch.add(
            pointer(&["spec", "securityContext", "supplementalGroups"]),
            json!([gid]),
        ),
        None => patch.add(
            pointer(&["spec", "securityContext"]),
            json!({"supplementalGroups": [gid]}),
        ),
    }
}

fn has_env(container: &Container<'_>, name: &str) -> bool {
    container.env.as_ref().is_some_and(|e| e.has(name))
}

/// `Some(true)` if NODE_IP is the node IP, `Some(false)` if it is something else.
fn env_value_from_host_ip(container: &Container<'_>) -> Option<bool> {
    container.env.as_ref()?.is_host_ip(NODE_IP)
}

fn env(patch: &mut Patch, index: usize, container: &Container<'_>, vars: Vec<Value>) {
    let index = index.to_string();
    patch.append(
        &["spec", "containers", &index, "env"],
        Parent::of(&container.env),
        vars,
    );
}

/// A mount of the container at a parent or a child of `path`: mounting `path` too would
/// hide part of it, or be hidden by it (a job's own mount over the daemon's socket).
fn overlapping<'c, 'p>(container: &'c Container<'p>, path: &str) -> Option<&'c VolumeMount<'p>> {
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    mounts.iter().find(|m| {
        let other = m.mount_path.trim_end_matches('/');
        let other = if other.is_empty() { "/" } else { other };
        other != path && (within(path, other) || within(other, path))
    })
}

/// Whether `path` is inside `dir` (segment-wise).
fn within(path: &str, dir: &str) -> bool {
    dir == "/"
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The volume mounted at `path` in the container, if any.
fn mounted_at<'c>(container: &'c Container<'_>, path: &str) -> Option<&'c str> {
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    mounts
        .iter()
        .find(|m| {
            let at = m.mount_path.trim_end_matches('/');
            at == path || (at.is_empty() && path == "/")
        })
        .map(|m| m.name.as_ref())
}

fn taken(container: &Container<'_>, path: &str, volume: &str) -> String {
    format!(
        "{}: {path} is already mounted from volume {}; {DOCKER_HOST} not set",
        container.name,
        super::shorten(volume)
    )
}

/// A read-only mount: connecting to a socket works through it, replacing it does not.
fn add_mount(patch: &mut Patch, index: usize, container: &Container<'_>, volume: &str, path: &str) {
    let index = index.to_string();
    patch.append(
        &["spec", "containers", &index, "volumeMounts"],
        Parent::of(&container.volume_mounts),
        vec![json!({"name": volume, "mountPath": path, "readOnly": true})],
    );
}

/// What a volume the webhook needs must point at.
#[derive(Clone, Copy, PartialEq)]
enum Source<'s> {
    /// A host path: the node daemon's socket, or its directory.
    Host(&'s str, SocketMount),
    /// A Secret (the Docker client certificates).
    Secret(&'s str),
}

impl Source<'_> {
    fn matches(&self, v: &Volume<'_>) -> bool {
        match self {
            Source::Host(path, _) => v
                .host_path
                .as_ref()
                .is_some_and(|h| h.path.trim_end_matches('/') == *path),
            Source::Secret(secret) => {
                v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(*secret)
            }
        }
    }

    fn volume(&self, name: &str) -> Value {
        match self {
            // A missing directory is created (empty: the daemon is not up yet); a missing
            // socket fails the pod's start rather than becoming an empty directory that
            // would then stop the daemon from creating its socket.
            Source::Host(dir, SocketMount::Directory) => {
                json!({"name": name, "hostPath": {"path": dir, "type": "DirectoryOrCreate"}})
            }
            Source::Host(socket, SocketMount::File) => {
                json!({"name": name, "hostPath": {"path": socket, "type": "Socket"}})
            }
            Source::Secret(secret) => json!({"name": name, "secret": {"secretName": secret}}),
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Host(dir, SocketMount::Directory) => {
                format!("the node Docker daemon's directory {dir}")
            }
            Source::Host(socket, SocketMount::File) => {
                format!("the node Docker daemon's socket {socket}")
            }
            Source::Secret(secret) => format!("the Secret {secret}"),
        }
    }
}

/// The pod's volumes, plus the ones this webhook adds (each at most once).
struct Volumes<'a, 'p, 's> {
    pod: &'a Pod<'p>,
    /// (name, source) of each volume to add.
    added: Vec<(String, Source<'s>)>,
}

impl<'a, 'p, 's> Volumes<'a, 'p, 's> {
    fn new(pod: &'a Pod<'p>) -> Self {
        Volumes {
            pod,
            added: Vec::new(),
        }
    }

    fn existing(&self) -> &[Volume<'p>] {
        self.pod.spec().volumes.as_deref().unwrap_or_default()
    }

    /// Whether volume `name` (existing or added) points at `source`.
    fn is(&self, name: &str, source: Source<'_>) -> bool {
        self.existing()
            .iter()
            .any(|v| v.name == name && source.matches(v))
            || self.added.iter().any(|(n, s)| n == name && *s == source)
    }

    /// The name of a volume for `source`: an existing one, or a new one called `name`.
    fn ensure(
        &mut self,
        name: &str,
        source: Source<'s>,
        warnings: &mut Vec<String>,
    ) -> Option<String> {
        if let Some(v) = self.existing().iter().find(|v| source.matches(v)) {
            return Some(v.name.to_string());
        }
        if self.is(name, source) {
            return Some(name.to_string());
        }
        let taken = self.existing().iter().any(|v| v.name == name)
            || self.added.iter().any(|(n, _)| n == name);
        if taken {
            warnings.push(format!(
                "volume {name} already exists and is not {}; {DOCKER_HOST} not set",
                source.describe()
            ));
            return None;
        }
        self.added.push((name.to_string(), source));
        Some(name.to_string())
    }

    fn emit(self, patch: &mut Patch) {
        let state = Parent::of(&self.pod.spec().volumes);
        let volumes = self.added.iter().map(|(n, s)| s.volume(n)).collect();
        patch.append(&["spec", "volumes"], state, volumes);
    }
}
