//! Issue 25, point 3: ephemeral containers (`kubectl debug`, the
//! `pods/ephemeralcontainers` subresource) added to a governed pod. Under the default
//! `ephemeralContainers: restricted` a new one may not be privileged, add capabilities,
//! allow privilege escalation or otherwise leave the container's confinement, carry the
//! NVIDIA toolkit's variables, or mount the pod's Docker socket or any hostPath volume.
//! Only the containers the update adds are judged (`object` against `oldObject`).

use super::resize::{admitted, update};
use super::*;
use crate::answer::Outcome;
use crate::mutate::ephemeral_containers;

/// A debug container as `kubectl debug -it POD --image=busybox` adds it, with `extra`
/// fields.
fn debugger(name: &str, extra: Value) -> Value {
    let mut c = json!({
        "name": name,
        "image": "busybox:1.37",
        "stdin": true,
        "tty": true,
        "targetContainerName": "build",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        c[k] = v.clone();
    }
    c
}

/// The job pod as the webhook admitted it, with the runner's Docker socket volume.
fn job() -> Value {
    let mut pod = admitted("k8srunner");
    pod["spec"]["volumes"] = json!([
        {"name": "docker", "hostPath": {"path": "/var/run/docker.sock", "type": ""}},
        {"name": "repo", "emptyDir": {}},
        {"name": "ci-dind", "hostPath": {"path": "/var/run/ci-dind", "type": "Directory"}}
    ]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "repo", "mountPath": "/builds"}, {"name": "docker", "mountPath": "/var/run/docker.sock"}]);
    pod
}

fn with_ephemeral(pod: &Value, containers: &[Value]) -> Value {
    let mut pod = pod.clone();
    let list = pod["spec"]["ephemeralContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    pod["spec"]["ephemeralContainers"] = json!(
        list.into_iter()
            .chain(containers.iter().cloned())
            .collect::<Vec<_>>()
    );
    pod
}

/// The answer to adding `containers` to `old`'s ephemeral containers.
fn add<'p>(policy: &'p Policy, old: &Value, containers: &[Value]) -> crate::answer::Answer<'p> {
    update(
        policy,
        "ephemeralcontainers",
        "enabled",
        old,
        &with_ephemeral(old, containers),
    )
}

fn denial(answer: &crate::answer::Answer<'_>) -> String {
    assert!(!answer.allowed, "expected a denial");
    answer.status.as_ref().expect("status").message.clone()
}

#[test]
fn a_privileged_debug_container_with_the_nodes_gpus_and_docker_socket_is_refused() {
    let old = job();
    let evil = debugger(
        "debugger-x7k2p",
        json!({
            "securityContext": {"privileged": true},
            "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}],
            "volumeMounts": [{"name": "docker", "mountPath": "/var/run/docker.sock"}]
        }),
    );
    let answer = add(&DEFAULT, &old, &[evil]);
    assert_eq!(answer.outcome, Outcome::Denied);
    let message = denial(&answer);
    for needle in [
        "ephemeral container debugger-x7k2p",
        "privileged",
        "env NVIDIA_VISIBLE_DEVICES",
        "mounts volume docker (the pod's Docker socket, hostPath /var/run/docker.sock)",
        "ephemeralContainers: restricted",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
}

#[test]
fn a_plain_debug_container_is_allowed() {
    let plain = debugger(
        "debugger-abc",
        json!({
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true},
            "env": [{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"}, {"name": "nvidia_visible_devices", "value": "all"}],
            "volumeMounts": [{"name": "repo", "mountPath": "/builds"}]
        }),
    );
    let answer = add(&DEFAULT, &job(), &[plain]);
    assert!(answer.allowed);
    assert_eq!(answer.outcome, Outcome::Unchanged);
}

/// Every other way out of the container's confinement a debug container could ask for.
#[test]
fn each_way_out_is_refused_on_its_own() {
    let old = job();
    for (extra, says) in [
        (
            json!({"securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}),
            "adds capabilities SYS_PTRACE",
        ),
        (
            json!({"securityContext": {"allowPrivilegeEscalation": true}}),
            "allowPrivilegeEscalation",
        ),
        (
            json!({"securityContext": {"procMount": "Unmasked"}}),
            "procMount Unmasked",
        ),
        (
            json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
            "seccompProfile Unconfined",
        ),
        (
            json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}),
            "appArmorProfile Unconfined",
        ),
        (
            json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}),
            "seLinuxOptions type spc_t",
        ),
        (
            json!({"securityContext": {"windowsOptions": {"hostProcess": true}}}),
            "hostProcess",
        ),
        (
            json!({"env": [{"name": "NVIDIA_IMEX_CHANNELS", "value": "0"}]}),
            "env NVIDIA_IMEX_CHANNELS",
        ),
        (
            json!({"env": [{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"}]}),
            "env NVIDIA_DRIVER_CAPABILITIES",
        ),
        (
            json!({"env": [{"name": "NVIDIA_VISIBLE_DEVICES", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]}),
            "env NVIDIA_VISIBLE_DEVICES",
        ),
        (
            json!({"envFrom": [{"configMapRef": {"name": "jobs-own"}}]}),
            "envFrom",
        ),
        (
            json!({"envFrom": [{"prefix": "NVIDIA_", "secretRef": {"name": "s"}}]}),
            "envFrom",
        ),
        (
            json!({"volumeMounts": [{"name": "ci-dind", "mountPath": "/d", "readOnly": true}]}),
            "mounts volume ci-dind",
        ),
    ] {
        let message = denial(&add(&DEFAULT, &old, &[debugger("dbg", extra.clone())]));
        assert!(message.contains(says), "{extra}: {message}");
    }
    // A prefix that cannot spell NVIDIA_* is fine.
    let answer = add(
        &DEFAULT,
        &old,
        &[debugger(
            "dbg",
            json!({"envFrom": [{"prefix": "APP_", "configMapRef": {"name": "c"}}]}),
        )],
    );
    assert!(answer.allowed);
}

/// A Docker socket the pod shares through another volume (an emptyDir a dind service
/// writes its socket to) is the pod's Docker socket too.
#[test]
fn a_docker_socket_in_any_volume_the_pod_mounts_as_one_is_refused() {
    let mut old = job();
    old["spec"]["volumes"]
        .as_array_mut()
        .expect("volumes")
        .push(json!({"name": "dind-sock", "emptyDir": {}}));
    old["spec"]["containers"][2]["volumeMounts"] =
        json!([{"name": "dind-sock", "mountPath": "/var/run/docker.sock"}]);
    let message = denial(&add(
        &DEFAULT,
        &old,
        &[debugger(
            "dbg",
            json!({"volumeMounts": [{"name": "dind-sock", "mountPath": "/x"}]}),
        )],
    ));
    assert!(
        message.contains("mounts volume dind-sock (the pod's Docker socket"),
        "{message}"
    );
}

#[test]
fn only_the_ephemeral_containers_the_update_adds_are_judged() {
    // One added while the policy allowed it stays; a compliant one may join it.
    let old = with_ephemeral(
        &job(),
        &[debugger(
            "old-root",
            json!({"securityContext": {"privileged": true}}),
        )],
    );
    let answer = add(&DEFAULT, &old, &[debugger("new-one", json!({}))]);
    assert!(answer.allowed);
    // The stored pod as a whole, as `audit` will judge it: the old one is a problem.
    let text = serde_json::to_string(&with_ephemeral(&old, &[])).expect("json");
    let pod: Pod<'_> = serde_json::from_str(&text).expect("pod");
    let problems = ephemeral_containers::check(&DEFAULT, &pod);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("ephemeral container old-root: privileged"),
        "{problems:?}"
    );
}

#[test]
fn the_policy_may_deny_every_ephemeral_container_or_allow_any() {
    let deny = policy_from(&default_with("ephemeralContainers: deny\n"));
    let message = denial(&add(&deny, &job(), &[debugger("dbg", json!({}))]));
    assert!(
        message.contains("ephemeral container dbg: ephemeralContainers is deny in the policy"),
        "{message}"
    );
    let allow = policy_from(&default_with("ephemeralContainers: allow\n"));
    let answer = add(
        &allow,
        &job(),
        &[debugger(
            "dbg",
            json!({"securityContext": {"privileged": true}}),
        )],
    );
    assert!(answer.allowed);
    assert_eq!(
        answer.skip_reason(),
        Some(SkipReason::EphemeralContainersAllowed)
    );
    assert!(
        allow
            .warnings()
            .iter()
            .any(|w| w.starts_with("ephemeralContainers: allow")),
        "{:?}",
        allow.warnings()
    );
    let error = Policy::parse(&default_with("ephemeralContainers: sometimes\n"), "p.yaml")
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("unknown variant `sometimes`, expected one of deny, restricted, allow"),
        "{error}"
    );
}

#[test]
fn warn_mode_allows_with_warnings_and_ungoverned_pods_are_skipped() {
    let old = job();
    let new = with_ephemeral(
        &old,
        &[debugger(
            "dbg",
            json!({"securityContext": {"privileged": true}}),
        )],
    );
    let answer = update(&DEFAULT, "ephemeralcontainers", "warn", &old, &new);
    assert!(answer.allowed);
    assert_eq!(answer.outcome, Outcome::WouldDeny);
    assert!(
        answer
            .warnings
            .iter()
            .any(|w| w.contains("would deny") && w.contains("privileged"))
    );
    assert_eq!(
        update(&DEFAULT, "ephemeralcontainers", "disabled", &old, &new).skip_reason(),
        Some(SkipReason::NamespaceNotOptedIn)
    );
}

/// The default policy with `line` added at the top level.
fn default_with(line: &str) -> String {
    format!("{}\n{line}", crate::policy::DEFAULT_POLICY_YAML)
}
