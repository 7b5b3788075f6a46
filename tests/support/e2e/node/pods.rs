//! Job pods on the test node: GitLab Runner's pods from tests/fixtures/ with local images
//! and test scripts, waiting for them, their logs, and their containers' limits as the
//! containers and the host's cgroups show them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use serde_json::{Value, json};

use super::super::{TestNamespace, job_pod, renamed};
use super::{CGROUP_ROOT, Node};

/// Busybox (Debian's busybox-static): every container's image unless a test names
/// another.
pub const BUSYBOX: &str = "localhost/e2e/busybox:1";
/// Busybox with a Docker client (Debian's docker CLI) and curl, run as root.
pub const DOCKER_CLI: &str = "localhost/e2e/docker-cli:1";
/// The same image run as uid 1000 (`USER 1000:1000`), like non-root build images.
pub const DOCKER_CLI_NONROOT: &str = "localhost/e2e/docker-cli-nonroot:1";
/// How long a pod on the loaded 2-core machine may take to run a few shell lines.
pub const POD_PATIENCE: Duration = Duration::from_secs(90);

/// A GitLab Runner job pod from `tests/fixtures/`, as the runner sends it, made to run
/// here: every image replaced by [`BUSYBOX`] (`imagePullPolicy: Never`: no registry is
/// reachable), every container's command by its script in `scripts` (`sh -c`; `true`
/// for the others), and no container resources, so the class gives them all (a runner
/// whose config sets no CPU or memory: SKA's). Volumes, privileges, host aliases, stdin,
/// node selector, service account and pull secret stay as the runner sent them.
pub fn runnable(fixture: &str, name: &str, scripts: &[(&str, &str)]) -> Value {
    let mut pod = renamed(&job_pod(fixture), name);
    for list in ["initContainers", "containers"] {
        for container in pod["spec"][list].as_array_mut().into_iter().flatten() {
            let script = scripts
                .iter()
                .find(|(c, _)| container["name"] == *c)
                .map_or("true", |(_, s)| s);
            let container = container.as_object_mut().expect("a container");
            container.insert("image".into(), json!(BUSYBOX));
            container.insert("imagePullPolicy".into(), json!("Never"));
            container.insert("command".into(), json!(["sh", "-c", script]));
            container.remove("args");
            container.remove("resources");
        }
    }
    pod
}

/// Sets the image of `container` in `pod`.
pub fn set_image(pod: &mut Value, container: &str, image: &str) {
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            if c["name"] == container {
                c["image"] = json!(image);
            }
        }
    }
}

/// Where the runner's `scripts` emptyDir is mounted in every container of the fixtures.
pub fn scripts_dir(pod: &Value) -> String {
    super::super::container(pod, "build")["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == "scripts")
        .and_then(|m| m["mountPath"].as_str())
        .expect("the runner's scripts volume")
        .to_string()
}

/// Shell that prints one `FACTS` line: the container's memory and CPU limits as its
/// cgroup files say (cgroup v1 or v2) and the limitsEnv variables.
pub const PRINT_FACTS: &str = r#"
if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
  mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
  cpu="$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
else
  mem=$(cat /sys/fs/cgroup/memory.max)
  cpu=$(cat /sys/fs/cgroup/cpu.max)
fi
echo "FACTS mem=$mem cpu=${cpu% *}/${cpu#* } JOB_RUNNER_CLASS=${JOB_RUNNER_CLASS-} JOB_CPUS=${JOB_CPUS-} JOB_CPU_MILLICORES=${JOB_CPU_MILLICORES-} JOB_MEMORY_BYTES=${JOB_MEMORY_BYTES-}"
"#;

/// Shell that waits (up to a minute) until the file `path` exists.
pub fn wait_for_file(path: &str) -> String {
    format!(
        "i=0; until [ -e {path} ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done; [ -e {path} ]\n"
    )
}

/// A memory and CPU limit: `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u64>,
}

impl Limits {
    /// From cgroup files: v1's `memory.limit_in_bytes` (unlimited is a number near
    /// 2^63) and `cpu.cfs_quota_us`/`cpu.cfs_period_us` (-1 unlimited), or v2's
    /// `memory.max` and `cpu.max` (`max` unlimited).
    pub fn from_cgroup(memory: &str, quota: &str, period: &str) -> Limits {
        let memory_bytes = match memory.trim() {
            "max" => None,
            text => Some(text.parse::<u64>().expect("memory limit")).filter(|b| *b < 1 << 62),
        };
        let cpu_millis = match quota.trim() {
            "max" | "-1" => None,
            text => {
                let quota: u64 = text.parse().expect("CPU quota");
                let period: u64 = period.trim().parse().expect("CPU period");
                Some(quota * 1000 / period)
            }
        };
        Limits {
            memory_bytes,
            cpu_millis,
        }
    }
}

/// What a container printed with [`PRINT_FACTS`].
#[derive(Debug)]
pub struct Facts {
    pub limits: Limits,
    /// The limitsEnv variables, empty when unset.
    pub env: BTreeMap<String, String>,
}

impl Facts {
    /// The `FACTS` line of a container's log.
    pub fn from_log(log: &str) -> Facts {
        let line = log
            .lines()
            .find(|l| l.starts_with("FACTS "))
            .unwrap_or_else(|| panic!("no FACTS line in the log:\n{log}"));
        let fields: BTreeMap<String, String> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (quota, period) = fields["cpu"].split_once('/').expect("quota/period");
        let limits = Limits::from_cgroup(&fields["mem"], quota, period);
        let env = fields
            .into_iter()
            .filter(|(k, _)| k.starts_with("JOB_"))
            .collect();
        Facts { limits, env }
    }
}

impl Node {
    /// The limits in the host's cgroup of container `id` (the containerd ID of a
    /// container status, without `containerd://`).
    pub fn host_limits(&self, id: &str) -> Limits {
        let base = Path::new("/sys/fs/cgroup");
        let root = CGROUP_ROOT.trim_start_matches('/');
        if base.join("cgroup.controllers").exists() {
            let dir = find_dir(&base.join(root), id);
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("cgroup file");
            let cpu = read("cpu.max");
            let (quota, period) = cpu.trim().split_once(' ').expect("cpu.max");
            return Limits::from_cgroup(&read("memory.max"), quota, period);
        }
        let memory = find_dir(&base.join("memory").join(root), id);
        let cpu = base.join("cpu").join(
            memory
                .strip_prefix(base.join("memory"))
                .expect("below memory"),
        );
        let read = |d: &Path, f: &str| {
            std::fs::read_to_string(d.join(f))
                .unwrap_or_else(|e| panic!("read {}: {e}", d.join(f).display()))
        };
        Limits::from_cgroup(
            &read(&memory, "memory.limit_in_bytes"),
            &read(&cpu, "cpu.cfs_quota_us"),
            &read(&cpu, "cpu.cfs_period_us"),
        )
    }
}

/// The directory named `name` below `dir` (depth first).
fn find_dir(dir: &Path, name: &str) -> PathBuf {
    fn walk(dir: &Path, name: &str) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name() == name {
                return Some(path);
            }
            if let Some(found) = walk(&path, name) {
                return Some(found);
            }
        }
        None
    }
    walk(dir, name).unwrap_or_else(|| panic!("no cgroup {name} below {}", dir.display()))
}

/// The status of container `name` (containers or initContainers) of a pod.
pub fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|list| pod["status"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no status of container {name}: {}", pod["status"]))
}

/// Whether the pod's status says container `name` runs.
pub fn running(pod: &Value, name: &str) -> bool {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|list| pod["status"][list].as_array())
        .flatten()
        .any(|c| c["name"] == name && c["state"]["running"].is_object())
}

/// The containerd ID of container `name`, from the pod's status.
pub fn container_id(pod: &Value, name: &str) -> String {
    let id = container_status(pod, name)["containerID"]
        .as_str()
        .unwrap_or_else(|| panic!("container {name} has no ID yet"));
    id.trim_start_matches("containerd://").to_string()
}

/// `reason/exitCode` of the terminated container `name`.
pub fn termination(pod: &Value, name: &str) -> String {
    let terminated = &container_status(pod, name)["state"]["terminated"];
    format!(
        "{}/{}",
        terminated["reason"].as_str().unwrap_or("?"),
        terminated["exitCode"]
    )
}

impl TestNamespace<'_> {
    /// Waits until pod `name` holds `ready`; panics after `limit` with its status.
    pub async fn wait_for_pod(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let pod = self.get_pod(name).await;
            if ready(&pod) {
                return pod;
            }
            assert!(
                start.elapsed() < limit,
                "pod {}/{name}: not {what} after {limit:?}; its status: {:#}",
                self.name,
                pod["status"]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until pod `name` has finished (`Succeeded` or `Failed`).
    pub async fn finished(&self, name: &str) -> Value {
        self.wait_for_pod(name, "finished", POD_PATIENCE, |pod| {
            matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        })
        .await
    }

    /// The log of `container` of pod `pod`, through the API server (which asks the
    /// kubelet).
    pub async fn logs(&self, pod: &str, container: &str) -> String {
        let params = LogParams {
            container: Some(container.to_string()),
            ..LogParams::default()
        };
        Api::<Pod>::namespaced(self.cp.client().await, &self.name)
            .logs(pod, &params)
            .await
            .unwrap_or_else(|e| panic!("logs of {}/{pod} {container}: {e}", self.name))
    }

    /// Waits until the log of `container` holds `needle`, and returns it.
    pub async fn wait_for_log(&self, pod: &str, container: &str, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let params = LogParams {
                container: Some(container.to_string()),
                ..LogParams::default()
            };
            let log = Api::<Pod>::namespaced(self.cp.client().await, &self.name)
                .logs(pod, &params)
                .await
                .unwrap_or_default();
            if log.contains(needle) {
                return log;
            }
            if start.elapsed() > POD_PATIENCE {
                let pod = self.get_pod(pod).await;
                panic!(
                    "{}/{} {container}: no {needle:?} in its log after {POD_PATIENCE:?}:\n{log}\nthe pod's status: {:#}",
                    self.name, pod["metadata"]["name"], pod["status"]
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
