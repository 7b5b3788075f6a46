//! Can job pods run where the policy sends them? Per class: the nodes that match its
//! nodeSelector and whose taints it tolerates; for GPU classes, allocatable GPUs and the
//! RuntimeClass; its CPU limits against its nodes' CPUs (`cpus.rs`); in socket mode, the
//! node Docker daemon on every node a job can land on.

mod cpus;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Toleration};

use super::report::Check;
use super::selector::{node_matches, taint_text, unschedulable, untolerated};
use ci_pod_webhook_core::policy::{DockerMode, Policy, RunnerClass, SocketMount};

pub const GROUP: &str = "runner classes";
pub const DOCKER_GROUP: &str = "node Docker daemon";

/// The class's tolerations as the API server would store them.
fn tolerations(class: &RunnerClass) -> Vec<Toleration> {
    class
        .tolerations
        .iter()
        .map(|t| Toleration {
            key: Some(t.key.clone()).filter(|k| !k.is_empty()),
            operator: Some(t.operator.as_str().to_string()),
            value: Some(t.value.clone()).filter(|v| !v.is_empty()),
            effect: Some(t.effect.clone()).filter(|e| !e.is_empty()),
            toleration_seconds: t.toleration_seconds,
        })
        .collect()
}

/// The nodes a job pod of `class` can be scheduled on (labels, taints, not cordoned).
pub fn usable<'n>(class: &RunnerClass, nodes: &'n [Node]) -> Vec<&'n Node> {
    let tolerations = tolerations(class);
    nodes
        .iter()
        .filter(|n| node_matches(n, &class.node_selector))
        .filter(|n| untolerated(n, &tolerations).is_empty() && !unschedulable(n))
        .collect()
}

fn name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

fn names<'n>(nodes: impl IntoIterator<Item = &'n Node>) -> String {
    let all: Vec<&str> = nodes.into_iter().map(name).collect();
    let shown = all.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if all.len() > 5 {
        format!("{shown} and {} more", all.len() - 5)
    } else {
        shown
    }
}

fn selector_text(class: &RunnerClass) -> String {
    let pairs: Vec<String> = class
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join(" ")
}

/// One line per class, and for GPU classes the GPU and RuntimeClass lines.
/// `runtime_classes` is `Err` when they could not be listed.
pub fn classes(
    policy: &Policy,
    nodes: &[Node],
    runtime_classes: Result<&[String], &str>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for class in &policy.classes {
        let usable = usable(class, nodes);
        checks.push(if usable.is_empty() {
            why_none(class, nodes)
        } else {
            Check::ok(
                GROUP,
                format!(
                    "class {}: {} node(s) can run its job pods ({})",
                    class.name,
                    usable.len(),
                    names(usable.iter().copied())
                ),
            )
        });
        checks.extend(cpus::above_its_nodes(class, &usable));
        let Some(gpu) = &class.gpu else { continue };
        if !usable.is_empty() {
            let with_gpus = usable
                .iter()
                .filter(|n| allocatable(n, &gpu.resource) >= u64::from(gpu.count))
                .count();
            checks.push(if with_gpus == 0 {
                Check::failure(
                    GROUP,
                    format!(
                        "class {}: none of its nodes has {} allocatable {}",
                        class.name, gpu.count, gpu.resource
                    ),
                )
                .hint(format!("every GPU job of class {} would stay Pending", class.name))
                .fix("install the NVIDIA device plugin on the GPU nodes (the NVIDIA GPU Operator does)")
            } else {
                Check::ok(
                    GROUP,
                    format!(
                        "class {}: {with_gpus} node(s) with allocatable {}",
                        class.name, gpu.resource
                    ),
                )
            });
        }
        if let Some(runtime_class) = &gpu.runtime_class_name {
            checks.push(match runtime_classes {
                Ok(list) if list.iter().any(|n| n == runtime_class) => Check::ok(
                    GROUP,
                    format!("class {}: RuntimeClass {runtime_class} exists", class.name),
                ),
                Ok(_) => Check::failure(
                    GROUP,
                    format!("class {}: RuntimeClass {runtime_class} does not exist", class.name),
                )
                .hint(format!(
                    "ci-pod-webhook denies every job pod of class {} (the API server would refuse it)",
                    class.name
                ))
                .fix(format!(
                    "install the NVIDIA GPU Operator (it creates RuntimeClass {runtime_class}), or remove gpu.runtimeClassName from class {} in the policy",
                    class.name
                )),
                Err(error) => Check::failure(
                    GROUP,
                    format!("class {}: cannot list RuntimeClasses: {error}", class.name),
                )
                .fix("kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md)"),
            });
        }
    }
    checks
}

/// The ✘ for a class no node can take, saying which of the three reasons it is.
fn why_none(class: &RunnerClass, nodes: &[Node]) -> Check {
    let headline = format!("class {}: no node can run its job pods", class.name);
    let pending = format!("every job pod of class {} would stay Pending", class.name);
    let labelled: Vec<&Node> = nodes
        .iter()
        .filter(|n| node_matches(n, &class.node_selector))
        .collect();
    if labelled.is_empty() {
        return Check::failure(GROUP, headline)
            .hint(format!(
                "{pending}: no node is labelled {}",
                selector_text(class)
            ))
            .fix(format!(
                "kubectl label node <node> {}",
                selector_text(class)
            ));
    }
    let tolerations = tolerations(class);
    let tainted: Vec<(&Node, String)> = labelled
        .iter()
        .filter_map(|n| {
            let left = untolerated(n, &tolerations);
            (!left.is_empty()).then(|| {
                let taints: Vec<String> = left.into_iter().map(taint_text).collect();
                (*n, taints.join(","))
            })
        })
        .collect();
    if let Some((node, taints)) = tainted.first() {
        return Check::failure(GROUP, headline)
            .hint(format!(
                "{pending}: labelled node(s) {} carry taints the class does not tolerate ({taints} on {})",
                names(tainted.iter().map(|(n, _)| *n)),
                name(node)
            ))
            .fix(format!(
                "add a toleration for them to class {} in the policy, or remove the taint (kubectl taint node {} {}-)",
                class.name,
                name(node),
                taints.split(',').next().unwrap_or_default()
            ));
    }
    Check::failure(GROUP, headline)
        .hint(format!(
            "{pending}: its node(s) {} are cordoned",
            names(labelled.iter().copied())
        ))
        .fix(format!("kubectl uncordon {}", name(labelled[0])))
}

/// The node's allocatable amount of an extended resource such as nvidia.com/gpu
/// (whole numbers; anything else counts as none).
fn allocatable(node: &Node, resource: &str) -> u64 {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get(resource))
        .and_then(|q| q.0.parse().ok())
        .unwrap_or(0)
}

/// Where `manifests/node-docker`'s DaemonSet puts its socket on every node (its
/// hostPath; `tests/integration/manifests.rs` checks the manifest says the same).
pub const NODE_DOCKER_DIR: &str = "/var/run/ci-dind";

/// Socket mode: every node a job pod can land on needs a Docker daemon. When the socket
/// is the node Docker DaemonSet's (under [`NODE_DOCKER_DIR`], or a directory the
/// DaemonSet mounts), the DaemonSet must cover every CI node. Any other socket belongs to
/// a daemon the host runs itself (SKA's `docker-for-gitlab` systemd unit): no DaemonSet
/// is needed, and the doctor says what it cannot see from the API. `daemon_set` is
/// `Err` when it could not be read, `Ok(None)` when it does not exist.
pub fn docker_daemon(
    policy: &Policy,
    nodes: &[Node],
    daemon_set: Result<Option<&DaemonSet>, &str>,
    where_: &str,
) -> Vec<Check> {
    if !matches!(policy.docker.mode, DockerMode::Socket { .. }) {
        return Vec::new();
    }
    if let Some(check) = host_daemon(policy, daemon_set.ok().flatten()) {
        return vec![check];
    }
    let mut ci_nodes: Vec<&Node> = policy
        .classes
        .iter()
        .flat_map(|c| usable(c, nodes))
        .collect();
    ci_nodes.sort_by_key(|n| name(n));
    ci_nodes.dedup_by_key(|n| name(n));
    let daemon_set = match daemon_set {
        Err(error) => {
            return vec![
                Check::failure(DOCKER_GROUP, format!("cannot read DaemonSet {where_}: {error}"))
                    .fix("kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md)"),
            ];
        }
        Ok(None) => {
            return vec![
                Check::failure(DOCKER_GROUP, format!("DaemonSet {where_} not found"))
                    .hint("socket mode: jobs that use Docker cannot reach a daemon")
                    .fix("kubectl apply -k manifests/node-docker"),
            ];
        }
        Ok(Some(ds)) => ds,
    };
    let template = daemon_set
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref());
    let selector = template
        .and_then(|t| t.node_selector.clone())
        .unwrap_or_default();
    let tolerations = template
        .and_then(|t| t.tolerations.clone())
        .unwrap_or_default();
    let uncovered: Vec<&Node> = ci_nodes
        .iter()
        .copied()
        .filter(|n| !node_matches(n, &selector) || !untolerated(n, &tolerations).is_empty())
        .collect();
    let mut checks = Vec::new();
    if uncovered.is_empty() {
        checks.push(Check::ok(
            DOCKER_GROUP,
            format!(
                "DaemonSet {where_} covers all {} CI node(s)",
                ci_nodes.len()
            ),
        ));
    } else {
        checks.push(
            Check::failure(
                DOCKER_GROUP,
                format!(
                    "DaemonSet {where_} does not run on {} of {} CI node(s): {}",
                    uncovered.len(),
                    ci_nodes.len(),
                    names(uncovered.iter().copied())
                ),
            )
            .hint("job pods placed there find no Docker socket")
            .fix("make the DaemonSet's nodeSelector and tolerations match the policy's ciNodes (manifests/node-docker/daemonset.yaml)"),
        );
    }
    let status = daemon_set.status.as_ref();
    let desired = status.map_or(0, |s| s.desired_number_scheduled);
    let ready = status.map_or(0, |s| s.number_ready);
    if ready < desired {
        checks.push(
            Check::warning(
                DOCKER_GROUP,
                format!("Docker daemon ready on {ready} of {desired} node(s)"),
            )
            .hint("jobs on the other nodes cannot reach a daemon until it is ready")
            .fix(format!(
                "kubectl -n {} get pods -o wide",
                daemon_set
                    .metadata
                    .namespace
                    .as_deref()
                    .unwrap_or("ci-dind")
            )),
        );
    }
    checks
}

/// Whether `path` is `dir` or inside it.
fn under(path: &str, dir: &str) -> bool {
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether the DaemonSet's pods mount a hostPath that holds `host_path`.
fn mounts_host_path(daemon_set: &DaemonSet, host_path: &str) -> bool {
    daemon_set
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|t| t.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.host_path.as_ref())
        .any(|h| under(host_path, h.path.trim_end_matches('/')))
}

/// Socket mode on a socket the host's own daemon serves (not under
/// [`NODE_DOCKER_DIR`], and not in a directory `daemon_set` mounts): the check that
/// says so, and what the doctor cannot see from the API. `None` in other modes, or
/// when the node Docker DaemonSet serves the socket. Runs with `--pre` too (no
/// DaemonSet read: nothing to install for a host daemon).
pub fn host_daemon(policy: &Policy, daemon_set: Option<&DaemonSet>) -> Option<Check> {
    let DockerMode::Socket {
        socket_path,
        mount,
        host_path,
        ..
    } = &policy.docker.mode
    else {
        return None;
    };
    let served_by_daemon_set = under(host_path, NODE_DOCKER_DIR)
        || daemon_set.is_some_and(|ds| mounts_host_path(ds, host_path));
    (!served_by_daemon_set).then(|| host_daemon_check(socket_path, *mount))
}

fn host_daemon_check(socket_path: &str, mount: SocketMount) -> Check {
    let mount = match mount {
        SocketMount::File => {
            "mount: file, so a restarted daemon's new socket reaches only the jobs started after the restart (docs/docker.md)"
        }
        SocketMount::Directory => {
            "mount: directory, which must hold nothing but the socket (docs/docker.md)"
        }
    };
    Check::ok(
        DOCKER_GROUP,
        format!(
            "socket mode on a host daemon: {socket_path}, not the ci-dind DaemonSet (none needed)"
        ),
    )
    .hint(format!(
        "checked: the policy's host-path rules accept the path, and the Pod Security level of each opted-in namespace (above); the doctor reads only the Kubernetes API, so it cannot see whether {socket_path} exists on each CI node or whether a daemon answers on it: a job on each class that runs `docker info` can; {mount}"
    ))
}

#[cfg(test)]
mod tests;
