//! A real node for the e2e tests: containerd, runc, the CNI bridge plugin and the
//! kubelet on this machine, joined to a control plane of its own (with kube-scheduler and
//! kube-controller-manager), so that pods run and their containers can be looked at.
//!
//! ```ignore
//! let node = Node::take_turn().await;               // started on first use, ~15 s
//! let webhook = node.webhook("ska", &policy_text).await; // one webhook per policy
//! let ns = node.namespace("my-test", "ska", &[]).await;
//! ns.create_pod(&runnable(...)).await?;
//! let pod = ns.finished("name").await;               // Succeeded or Failed
//! ```
//!
//! One node per machine: the kubelet rewrites host sysctls and iptables chains, and
//! containerd keeps state under /run/containerd. Its watchdog takes a host-wide lock
//! before anything starts (a second test binary waits for it) and, when this binary
//! ends however it ends, runs scripts/node/node-down.sh, which stops every process by
//! its pid file and removes what the run made (mounts, cgroups, network namespaces, the
//! bridge, iptables chains, sysctls, host paths), still holding the lock. The node's
//! tests take turns ([`Node::take_turn`]): they share 2 CPUs with each other's pods.
//!
//! Needs root, Debian's containerd, runc, containernetworking-plugins, busybox-static,
//! iptables, iproute2, curl, docker.io and util-linux's flock, and kubelet and
//! kube-controller-manager in `KUBEBUILDER_ASSETS` (docs/e2e.md, "A real node").
//! Missing any of them fails the test with what to install; nothing is skipped.

mod config;
mod docker;
mod pods;

#[allow(unused_imports)]
pub use docker::*;
#[allow(unused_imports)]
pub use pods::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard, OnceCell};

use super::pki::{self, Credentials};
use super::process::{self, Component, Watchdog};
use super::{ControlPlane, OPT_IN, Options, POLICY_LABEL, TestNamespace, Webhook};

/// The label CI nodes carry in the policies the tests use (`ciNodes.nodeSelector`).
pub const CI_NODE_LABEL: (&str, &str) = ("node-role.skatelescope.org/ci-worker", "true");
/// The host-wide lock of the machine's one test node.
const LOCK: &str = "/run/lock/ci-pod-webhook-e2e-node.lock";
/// Every pod's cgroup is below this, in each hierarchy.
const CGROUP_ROOT: &str = "/ci-pod-webhook-e2e";
const BRIDGE: &str = "cipodwebhook0";
const POD_CIDR: &str = "10.244.77.0/24";

/// The machine's test node, and the control plane it belongs to.
pub struct Node {
    pub cp: ControlPlane,
    /// The Node's name: this machine's host name when it resolves to a loopback
    /// address (the API server reaches the kubelet, on 127.0.0.1, by it), else
    /// `localhost`.
    pub name: String,
    /// Configuration, logs, pid files, containerd's and the kubelet's directories.
    pub state: PathBuf,
    /// containerd's socket, for `ctr`.
    pub containerd_socket: PathBuf,
    /// Allocatable CPUs and memory (bytes) the kubelet reports: the machine's.
    pub allocatable_cpus: u64,
    pub allocatable_memory: u64,
    /// The kubelet's HTTPS port on 127.0.0.1 (`/metrics/cadvisor`; anonymous requests
    /// are allowed).
    pub kubelet_port: u16,
    webhooks: Mutex<HashMap<String, &'static Webhook>>,
    host_docker: OnceCell<HostDocker>,
    dind_image: OnceCell<()>,
    turn: Mutex<()>,
    _containerd: Component,
    _kubelet: Component,
    watchdog: Watchdog,
}

static NODE: OnceCell<Result<Node, String>> = OnceCell::const_new();

/// The node, for one test at a time: the turn ends when this is dropped. A test that
/// panics keeps the node's and the control plane's logs (their paths are printed).
pub struct OnNode {
    node: &'static Node,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for OnNode {
    type Target = Node;
    fn deref(&self) -> &Node {
        self.node
    }
}

impl Drop for OnNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.node.keep_logs();
        }
    }
}

impl Node {
    /// The node (started by the first test that asks), once no other test of this
    /// binary uses it. If it did not start, every test that asks fails with the reason.
    pub async fn take_turn() -> OnNode {
        let node = match NODE.get_or_init(Self::start_or_explain).await {
            Ok(node) => node,
            Err(reason) => panic!("the test node did not start: {reason}"),
        };
        OnNode {
            node,
            _turn: node.turn.lock().await,
        }
    }

    async fn start_or_explain() -> Result<Node, String> {
        match tokio::spawn(Self::start()).await {
            Ok(node) => Ok(node),
            Err(error) => {
                let reason = match error.try_into_panic() {
                    Ok(panic) => panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                        .unwrap_or_else(|| "a panic".to_string()),
                    Err(error) => error.to_string(),
                };
                Err(reason)
            }
        }
    }

    async fn start() -> Node {
        let started = Instant::now();
        config::check_host();
        let assets = super::assets_dir();
        for name in ["kubelet", "kube-controller-manager", "kube-scheduler"] {
            super::asset(&assets, name);
        }
        let state = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kube-e2e-node");
        let down = super::repo_file("scripts/node/node-down.sh");
        let down_log = state.with_extension("down.log");
        let watchdog = Watchdog::start_node(Path::new(LOCK), &down, &state, &down_log);
        // Holding the lock: an earlier run's node is stopped. A state left by a run
        // whose clean-up never ran (the machine went down) is cleaned up first.
        if state.join("baseline").exists() {
            eprintln!(
                "kube-e2e: cleaning up after an earlier node in {}",
                state.display()
            );
            run(Command::new(&down).arg("down").arg(&state));
        }
        assert!(
            !std::fs::read_to_string("/proc/mounts")
                .unwrap_or_default()
                .contains(&format!("{}/", state.display())),
            "mounts are left under {}: run scripts/node/node-down.sh down {0} (docs/e2e.md)",
            state.display()
        );
        // The log of the last clean-up is read by then; this node's own follows.
        let _ = std::fs::write(&down_log, b"");
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(state.join("logs")).expect("create the node state directory");
        // Until the node is Ready: a start that fails keeps its logs.
        std::fs::write(state.join("KEEP"), b"").expect("write the KEEP marker");
        run(Command::new(&down).arg("baseline").arg(&state));
        let name = config::node_name();
        std::fs::write(
            state.join("node.env"),
            format!("CGROUP_ROOT={CGROUP_ROOT}\nBRIDGE={BRIDGE}\nNODE={name}\n"),
        )
        .expect("write node.env");

        // The images build while the control plane starts.
        let images = state.join("images");
        let mut build = Command::new(super::repo_file("scripts/node/images.sh"))
            .arg(&images)
            .arg("base")
            .stdout(std::fs::File::create(state.join("logs/images.log")).expect("log"))
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("run scripts/node/images.sh");
        let cp = ControlPlane::own("node", Options::default()).await;
        cp.scheduler().await;
        cp.controller_manager().await;
        cp.bind_nodes_to_their_role().await;

        config::cgroup_root(CGROUP_ROOT);
        let containerd_socket = state.join("containerd/containerd.sock");
        std::fs::create_dir_all(state.join("cni/net.d")).expect("mkdir cni");
        std::fs::write(
            state.join("cni/net.d/10-e2e.conflist"),
            config::cni(&state, BRIDGE, POD_CIDR),
        )
        .expect("write the CNI configuration");
        std::fs::write(
            state.join("containerd.toml"),
            config::containerd(&state, &containerd_socket),
        )
        .expect("write containerd.toml");
        let mut command = Command::new("containerd");
        command.arg("--config").arg(state.join("containerd.toml"));
        let containerd = spawn("containerd", command, &state, &watchdog);
        containerd
            .wait_until(Duration::from_secs(30), || async {
                ctr(&containerd_socket, &["version"]).status.success()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = build.wait().expect("wait for images.sh");
        assert!(
            status.success(),
            "scripts/node/images.sh failed ({status}); see above"
        );
        import_images(
            &containerd_socket,
            &images,
            &["pause", "busybox", "docker-cli"],
        );

        let (cert, key) = cp
            .pki
            .client_cert(&format!("system:node:{name}"), "system:nodes");
        let kubeconfig = state.join("kubelet.kubeconfig");
        std::fs::write(
            &kubeconfig,
            pki::kubeconfig(
                &cp.server,
                cp.ca_pem(),
                &Credentials::ClientCert {
                    cert_pem: &cert,
                    key_pem: &key,
                },
            ),
        )
        .expect("write the kubelet's kubeconfig");
        let (port, healthz) = (process::free_port(), process::free_port());
        std::fs::write(
            state.join("kubelet.yaml"),
            config::kubelet(&state, &containerd_socket, &cp.pki.ca_cert, port, healthz),
        )
        .expect("write the kubelet configuration");
        let mut command = Command::new(super::asset(&assets, "kubelet"));
        command
            .arg(format!("--config={}", state.join("kubelet.yaml").display()))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--root-dir={}", state.join("kubelet").display()))
            .arg(format!("--cert-dir={}", state.join("pki").display()))
            .arg(format!("--hostname-override={name}"))
            .arg(format!("--node-ip={}", config::node_ip()))
            // The kubelet's cAdvisor finds containers' names (the `container`, `pod` and
            // `image` labels of /metrics/cadvisor) through containerd's socket, which is
            // not at its default /run/containerd/containerd.sock here: without this flag
            // it reports only the pods' cgroups, unnamed (tests/e2e/node/sizing.rs).
            .arg(format!("--containerd={}", containerd_socket.display()))
            .arg("--v=2");
        let kubelet = spawn("kubelet", command, &state, &watchdog);
        let ready = kubelet
            .wait_until(Duration::from_secs(90), || cp.node_ready(&name))
            .await;
        if let Err(error) = ready {
            panic!("{error}\n(the node's files: {})", state.display());
        }
        cp.label_node(&name, CI_NODE_LABEL).await;
        let node = Api::<NodeObject>::all(cp.client().await)
            .get(&name)
            .await
            .expect("get the node");
        let allocatable = node
            .status
            .and_then(|s| s.allocatable)
            .expect("allocatable resources");
        let allocatable_cpus = allocatable["cpu"].0.parse().expect("whole CPUs");
        let allocatable_memory = config::bytes(&allocatable["memory"].0);
        let _ = std::fs::remove_file(state.join("KEEP"));
        eprintln!(
            "kube-e2e: node {name} Ready after {:.1?} ({allocatable_cpus} CPUs; files in {})",
            started.elapsed(),
            state.display()
        );
        Node {
            cp,
            name,
            state,
            containerd_socket,
            allocatable_cpus,
            allocatable_memory,
            kubelet_port: port,
            webhooks: Mutex::new(HashMap::new()),
            host_docker: OnceCell::new(),
            dind_image: OnceCell::new(),
            turn: Mutex::new(()),
            _containerd: containerd,
            _kubelet: kubelet,
            watchdog,
        }
    }

    /// The webhook serving `policy` (its text), started and registered for namespaces
    /// labelled [`POLICY_LABEL`]`=name` on first use.
    pub async fn webhook(&self, name: &str, policy: &str) -> &'static Webhook {
        let mut webhooks = self.webhooks.lock().await;
        if let Some(webhook) = webhooks.get(name) {
            return webhook;
        }
        let path = self.state.join(format!("policy-{name}.yaml"));
        std::fs::write(&path, policy).expect("write the policy");
        let webhook: &'static Webhook =
            Box::leak(Box::new(self.cp.start_webhook_with_policy(&path).await));
        self.cp.register_webhook_for(webhook, name).await;
        webhooks.insert(name.to_string(), webhook);
        webhook
    }

    /// An opted-in namespace whose pods the webhook of `policy` reviews, with `labels`.
    pub async fn namespace(
        &self,
        name: &str,
        policy: &str,
        labels: &[(&str, &str)],
    ) -> TestNamespace<'_> {
        let mut all = vec![OPT_IN, (POLICY_LABEL, policy)];
        all.extend_from_slice(labels);
        self.cp.namespace(name, &all).await
    }

    /// Marks the node's and the control plane's files to be kept, and says where.
    pub fn keep_logs(&self) {
        let marker = self.state.join("KEEP");
        if !marker.exists() {
            let _ = std::fs::write(marker, b"");
            eprintln!(
                "kube-e2e: a node test failed; the node's logs are kept in {}/logs \
                 (containerd.log, kubelet.log, dockerd-*.log)",
                self.state.display()
            );
        }
        self.cp.keep_logs();
    }

    /// The directory of the kubelet's `emptyDir` volume `volume` of pod `uid`.
    pub fn empty_dir(&self, uid: &str, volume: &str) -> PathBuf {
        self.state
            .join("kubelet/pods")
            .join(uid)
            .join("volumes/kubernetes.io~empty-dir")
            .join(volume)
    }
}

impl ControlPlane {
    /// Whether Node `name` is Ready and without the not-ready taint (which the
    /// controller-manager lifts).
    async fn node_ready(&self, name: &str) -> bool {
        let Ok(Some(node)) = Api::<NodeObject>::all(self.client().await)
            .get_opt(name)
            .await
        else {
            return false;
        };
        let ready = node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let tainted = node
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == "node.kubernetes.io/not-ready");
        ready && !tainted
    }

    /// Sets a label on Node `name`.
    pub async fn label_node(&self, name: &str, (key, value): (&str, &str)) {
        Api::<NodeObject>::all(self.client().await)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"labels": {key: value}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("label node {name}: {e}"));
    }

    /// Removes a label from Node `name`.
    pub async fn unlabel_node(&self, name: &str, key: &str) {
        Api::<NodeObject>::all(self.client().await)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"labels": {key: null}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("unlabel node {name}: {e}"));
    }

    /// The API server authorizes with RBAC only (no Node authorizer): the kubelet's
    /// group gets the `system:node` role.
    async fn bind_nodes_to_their_role(&self) {
        let binding: Value = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "e2e-system-nodes"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}],
        });
        let output = self.kubectl(&["apply", "-f", "-"], Some(binding.to_string().as_bytes()));
        assert!(
            output.status.success(),
            "bind system:nodes to system:node: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Starts a node process in the watchdog's group, its log and pid file in `state`.
fn spawn(name: &str, command: Command, state: &Path, watchdog: &Watchdog) -> Component {
    let log = state.join("logs").join(format!("{name}.log"));
    let component = Component::spawn(name, command, log, watchdog);
    std::fs::write(
        state.join(format!("{name}.pid")),
        component.pid().to_string(),
    )
    .expect("write the pid file");
    component
}

/// Runs `command` to its end; panics with its output if it fails.
pub fn run(command: &mut Command) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `ctr` against the node's containerd, in the kubelet's namespace.
pub fn ctr(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new("ctr")
        .arg(format!("--address={}", socket.display()))
        .args(["--namespace", "k8s.io"])
        .args(args)
        .output()
        .expect("run ctr")
}

/// Imports the archives `images/<name>.tar` into containerd.
fn import_images(socket: &Path, images: &Path, names: &[&str]) {
    for name in names {
        let archive = images.join(format!("{name}.tar"));
        let output = ctr(
            socket,
            &["images", "import", &archive.display().to_string()],
        );
        assert!(
            output.status.success(),
            "ctr images import {}: {}",
            archive.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
