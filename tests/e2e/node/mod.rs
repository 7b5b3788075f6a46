//! On a real node (docs/e2e.md, "A real node"): GitLab Runner job pods that the webhook
//! patched run on containerd and the kubelet, and the tests look inside their containers
//! and at the host. The node is the machine's one test node, shared by these tests, which
//! take turns on it (`Node::take_turn`).

mod docker_host;
mod doctor;
mod gpu;
mod job_pods;
mod node_docker;
mod oom;
mod sizing;

use serde_json::{Value, json};

use crate::support::e2e::repo_file;

/// The classes these tests add to the policies they run: small enough for a 2-CPU node.
pub const NO_LIMITS: &str = "e2e-no-limits";
pub const SMALL_MEMORY: &str = "e2e-small-memory";
pub const SIZING: &str = "e2e-sizing";

/// A policy file of the repository as JSON (which the policy parser reads as YAML).
fn policy_file(relative: &str) -> Value {
    let path = repo_file(relative);
    let text = std::fs::read_to_string(&path).expect("read the policy");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// examples/policies/ska-dp.yaml, as SKA's dp cluster runs it.
pub fn ska_shipped() -> String {
    policy_file("examples/policies/ska-dp.yaml").to_string()
}

/// examples/policies/ska-dp.yaml with the host daemon's socket group (`socket_group`, for
/// non-root build images), no `volumeName` (the volume is named after the socket), and
/// two classes of the tests' own: one with no CPU or memory limit for `build`, and one
/// with a 64Mi memory limit.
pub fn ska(socket_group: u32) -> String {
    let mut policy = policy_file("examples/policies/ska-dp.yaml");
    let docker = policy["docker"].as_object_mut().expect("docker");
    docker.remove("volumeName");
    docker.insert("socketGroup".into(), json!(socket_group));
    let small = json!({"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}});
    let sizing = json!({"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"cpu": "500m", "memory": "96Mi"}});
    policy["classes"][NO_LIMITS] = json!({
        "description": "e2e: build without CPU or memory limit",
        "build": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": null, "memory": null}},
        "helper": small, "services": small,
        "max": {"cpu": null, "memory": null},
    });
    policy["classes"][SIZING] = json!({
        "description": "e2e: half a CPU and 96Mi for every container",
        "build": sizing, "helper": sizing, "services": sizing,
        "max": {"cpu": "1", "memory": "96Mi"},
    });
    policy["classes"][SMALL_MEMORY] = json!({
        "description": "e2e: 64Mi for every container",
        "build": small, "helper": small, "services": small,
        "max": {"cpu": "1", "memory": "64Mi"},
    });
    policy.to_string()
}

/// manifests/base/policy.yaml, the default policy (socket mode on the node DaemonSet's
/// /var/run/ci-dind), with `socketGroup` if given.
pub fn default_policy(socket_group: Option<u32>) -> String {
    let mut policy = policy_file("manifests/base/policy.yaml");
    if let Some(gid) = socket_group {
        policy["docker"]["socketGroup"] = json!(gid);
    }
    policy.to_string()
}

/// The build script of the Docker tests: who it runs as, the daemon's `/_ping` and
/// `/version` with curl, the docker CLI's client and server versions, and every socket
/// the container can see (one line each).
pub const DOCKER_PROBE: &str = r#"
sock=${DOCKER_HOST#unix://}
echo "ID $(id)"
echo "PING $(curl -sS --unix-socket "$sock" http://docker/_ping 2>&1)"
echo "VERSION $(curl -sS --unix-socket "$sock" http://docker/version 2>&1)"
echo "CLI $(docker version --format 'client={{.Client.Version}} server={{.Server.Version}}' 2>&1 | tr '\n' ' ')"
echo "SOCKETS $(find / \( -path /proc -o -path /sys \) -prune -o -type s -print 2>/dev/null | sort | tr '\n' ' ')"
"#;

/// The line of a [`DOCKER_PROBE`] log that starts with `key`, without it.
pub fn probe<'l>(log: &'l str, key: &str) -> &'l str {
    log.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key} line in the log:\n{log}"))
        .trim()
}

/// GitLab Runner 17.9's job pod without services (`build`, `helper`,
/// `init-permissions`) whose build runs `script` in `image`: Docker tests need no
/// services, and three such pods fit the node's 2 CPUs at once.
pub fn build_pod(name: &str, image: &str, script: &str) -> Value {
    let mut pod = crate::support::e2e::runnable(
        "gitlab-runner-17.9-no-resources-no-services.json",
        name,
        &[("build", script)],
    );
    crate::support::e2e::set_image(&mut pod, "build", image);
    pod
}
