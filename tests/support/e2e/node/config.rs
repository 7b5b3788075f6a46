//! What the node's processes are started with: checks of the host, the cgroup parent, and
//! the configuration files of the CNI bridge, containerd and the kubelet.
//!
//! After ../shared/kube-e2e/node/node-up.sh, whose comments (and ../shared/kube-e2e/
//! README.md, "A real node") say why each setting is there; the ones that cost time to
//! find are repeated below.

use std::path::Path;
use std::process::Command;

/// Debian packages the node needs (docs/e2e.md).
const PACKAGES: &str = "containerd runc containernetworking-plugins busybox-static iproute2 \
                        iptables curl docker.io util-linux python3";

/// Fails, naming what to install, unless this is root on a machine with everything the
/// node needs.
pub fn check_host() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "the tests on a real node (e2e::node) run containerd and the kubelet: run them as \
         root (docs/e2e.md), or leave them out with `--skip node::`"
    );
    let mut missing = Vec::new();
    for command in [
        "containerd",
        "ctr",
        "runc",
        "flock",
        "ip",
        "iptables",
        "python3",
        "dockerd",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {command}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(command.to_string());
        }
    }
    for file in [
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/loopback",
        "/bin/busybox",
        "/usr/bin/curl",
        "/usr/bin/docker",
    ] {
        if !Path::new(file).exists() {
            missing.push(file.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "the tests on a real node need {} (apt-get install {PACKAGES}; docs/e2e.md)",
        missing.join(", ")
    );
}

/// This machine's host name if it resolves to a loopback address, else `localhost`: the
/// API server reaches the kubelet (logs, exec) by the Node's name, and the kubelet
/// listens on 127.0.0.1 only (its API allows anonymous requests here).
pub fn node_name() -> String {
    use std::net::ToSocketAddrs as _;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let loopback = !host.is_empty()
        && (host.as_str(), 0)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.all(|a| a.ip().is_loopback()));
    if loopback {
        host
    } else {
        "localhost".to_string()
    }
}

/// The node's InternalIP: the source address of the default route.
pub fn node_ip() -> String {
    let output = Command::new("ip")
        .args(["-4", "route", "get", "1.1.1.1"])
        .output()
        .expect("run ip route get");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut words = text.split_whitespace();
    words
        .find(|w| *w == "src")
        .and_then(|_| words.next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no IPv4 default route to take the node's IP from: {text}"))
}

/// Makes the pods' cgroup parent in every hierarchy. On cgroup v1, a new cpuset is
/// empty and every process attached to it fails (ENOSPC): it gets the root's CPUs and
/// memory nodes.
pub fn cgroup_root(root: &str) {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        let controllers =
            std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
        let dir = base.join(root.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).expect("create the cgroup parent");
        for c in controllers.split_whitespace() {
            let _ = std::fs::write(base.join("cgroup.subtree_control"), format!("+{c}"));
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
        return;
    }
    for entry in std::fs::read_dir(base)
        .expect("read /sys/fs/cgroup")
        .flatten()
    {
        let hierarchy = entry.path();
        if entry.file_name() == "unified" || !hierarchy.join("cgroup.procs").exists() {
            continue;
        }
        let dir = hierarchy.join(root.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        if entry.file_name() == "cpuset" {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let value = std::fs::read_to_string(hierarchy.join(file)).expect("root cpuset");
                std::fs::write(dir.join(file), value.trim()).expect("copy the root cpuset");
            }
        }
    }
}

/// A bridge with host-local addresses; the gateway on the bridge (which turns on
/// net.ipv4.ip_forward: node-down.sh restores it).
pub fn cni(state: &Path, bridge: &str, cidr: &str) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "ci-pod-webhook-e2e",
        "plugins": [{
            "type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": state.join("cni/networks"),
                "ranges": [[{"subnet": cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }],
    })
    .to_string()
}

/// Whether this process may lower OOM scores (CAP_SYS_RESOURCE). Without it, every
/// sandbox fails in runc (`can't get final child's PID from pipe: EOF`: writing -998
/// to oom_score_adj) unless containerd clamps the scores and the kubelet asks for none.
fn can_lower_oom_scores() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

pub fn containerd(state: &Path, socket: &Path) -> String {
    let runc = Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let restrict = !can_lower_oom_scores();
    let s = state.display();
    let sock = socket.display();
    format!(
        r#"version = 2
root = "{s}/containerd/root"
state = "{s}/containerd/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{s}/containerd/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "localhost/e2e/pause:1"
    enable_selinux = false
    disable_apparmor = true
    restrict_oom_score_adj = {restrict}
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "{runc}"
          Root = "{s}/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{s}/cni/net.d"
      max_conf_num = 1
"#
    )
}

/// The open-files limit the kubelet may set: this process's hard limit (without
/// CAP_SYS_RESOURCE it cannot raise it).
fn max_open_files() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|hard| hard.parse().ok())
        .unwrap_or(1_000_000)
        .min(1_000_000)
}

pub fn kubelet(state: &Path, socket: &Path, ca: &Path, port: u16, healthz: u16) -> String {
    let oom_score = if can_lower_oom_scores() { -999 } else { 0 };
    let s = state.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://{socket}
cgroupDriver: cgroupfs
cgroupRoot: {root}
failCgroupV1: false
failSwapOn: false
oomScoreAdj: {oom_score}
maxOpenFiles: {files}
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: AlwaysAllow}}
podLogsDir: {s}/pod-logs
volumePluginDir: {s}/volume-plugins
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
podCIDR: {cidr}
registerNode: true
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}}
rotateCertificates: false
serverTLSBootstrap: false
nodeStatusReportFrequency: 10s
"#,
        socket = socket.display(),
        root = super::CGROUP_ROOT,
        files = max_open_files(),
        ca = ca.display(),
        cidr = super::POD_CIDR,
    )
}

/// A memory quantity as the kubelet writes it (`24581384Ki`, or bytes), in bytes.
pub fn bytes(quantity: &str) -> u64 {
    let units = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)];
    for (suffix, factor) in units {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<u64>().expect("a whole number") * factor;
        }
    }
    quantity.parse().expect("bytes")
}
