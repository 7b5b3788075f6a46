//! The harness of the test binaries, in two parts.
//!
//! For tests/integration.rs, this file, client.rs and load.rs: real servers on loopback
//! port 0 with generated certificates, and a real HTTPS client (rustls + hyper's
//! connection-level client) whose connections the tests hold explicitly, so keep-alive
//! reuse, ALPN and the served certificate can be checked rather than assumed.
//!
//! For tests/e2e.rs, `e2e/`: a real kube-apiserver, etcd and kube-scheduler, and
//! `ci-pod-webhook serve` installed on them (docs/e2e.md). The e2e benches use it too.

mod client;
// tests/e2e.rs's part (and the e2e benches'): unused in tests/integration.rs.
#[allow(dead_code)]
pub mod e2e;
mod load;
// tests/integration/sizing.rs's real Prometheus.
pub mod prometheus;
pub use client::*;
pub use load::*;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ci_pod_webhook::certs;
use ci_pod_webhook::server::{Server, Settings};
use ci_pod_webhook_core::admission::PodReview;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const JOB_POD: &str = include_str!("../fixtures/gitlab-runner-16.5-job-pod.json");
/// Generous bound for anything a loaded 2-core machine should do "promptly".
pub const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- certificates

/// A CA and serving certificate for localhost, written to `dir` as tls.crt/tls.key.
pub fn write_certs(dir: &Path) -> certs::Generated {
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let generated = certs::generate("test", &names, 1).expect("generate");
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("tls.crt"), &generated.tls_cert).expect("write");
    std::fs::write(dir.join("tls.key"), &generated.tls_key).expect("write");
    std::fs::write(dir.join("ca.crt"), &generated.ca_cert).expect("write");
    generated
}

/// The DER of the first certificate in a PEM chain.
pub fn leaf_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem")
}

/// A directory laid out as the kubelet lays out a Secret or ConfigMap volume:
/// `name -> ..data/name`, `..data -> ..<version>`. [`Self::publish`] swaps `..data`
/// atomically, as the kubelet does on an update.
pub struct VolumeDir {
    pub root: PathBuf,
    version: u32,
}

impl VolumeDir {
    pub fn new(root: &Path, files: &[(&str, &[u8])]) -> VolumeDir {
        std::fs::create_dir_all(root).expect("mkdir");
        let mut volume = VolumeDir {
            root: root.to_path_buf(),
            version: 0,
        };
        volume.publish(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).expect("link");
        }
        volume
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn publish(&mut self, files: &[(&str, &[u8])]) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        let dir = self.root.join(&version);
        std::fs::create_dir(&dir).expect("mkdir");
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).expect("write");
        }
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).expect("link");
        std::fs::rename(&tmp, self.root.join("..data")).expect("swap ..data");
    }
}

// ---------------------------------------------------------------- server

/// Settings for a loopback server on ephemeral ports with quick reloads.
pub fn settings(cert: &Path, key: &Path) -> Settings {
    let mut settings = Settings::new(cert.to_path_buf(), key.to_path_buf());
    settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.reload_interval = Duration::from_millis(100);
    settings.drain_timeout = Duration::from_secs(10);
    settings
}

/// A server running in this process.
pub struct Running {
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    pub policy_hash: String,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Running {
    pub async fn start(settings: Settings) -> Running {
        let server = Server::bind(settings).await.expect("server binds");
        let (tx, rx) = oneshot::channel::<()>();
        Running {
            webhook: server.webhook_addr(),
            admin: server.admin_addr(),
            policy_hash: server.policy().policy.hash.clone(),
            shutdown: Some(tx),
            task: tokio::spawn(server.run(async {
                let _ = rx.await;
            })),
        }
    }

    /// A server with a fresh localhost certificate (kept in `dir`) and `change` applied.
    pub async fn with(dir: &Path, change: impl FnOnce(&mut Settings)) -> (Running, Client) {
        let (server, generated) = Running::with_certs(dir, change).await;
        (server, Client::trusting(&[&generated.ca_cert]))
    }

    /// [`Running::with`], handing back the certificates, for clients built by the test.
    pub async fn with_certs(
        dir: &Path,
        change: impl FnOnce(&mut Settings),
    ) -> (Running, certs::Generated) {
        let generated = write_certs(dir);
        let mut settings = settings(&dir.join("tls.crt"), &dir.join("tls.key"));
        change(&mut settings);
        (Running::start(settings).await, generated)
    }

    /// Sends the shutdown signal (the first SIGTERM, in production).
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn metrics(&self) -> String {
        let (status, text) = admin_get(self.admin, "/metrics").await.expect("metrics");
        assert_eq!(status, StatusCode::OK);
        text
    }

    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics().await, series)
    }
}

/// The value of `series` (name and labels exactly as exposed) in a metrics text; 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

/// GET on the admin port over a fresh plain HTTP/1.1 connection.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", "admin")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

/// Polls `check` every 20 ms until it holds; panics after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(what, PATIENCE, check).await;
}

/// Polls `check` every 20 ms until it holds; panics after `patience`.
pub async fn eventually_within<F, Fut>(what: &str, patience: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + patience;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- floods

/// A TCP connection to `addr` from `source` (Linux routes all of 127.0.0.0/8 to lo, so
/// any of it works as a client's address on loopback).
pub async fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// Fails with a clear message when the process may not open `needed` descriptors.
pub fn need_descriptors(needed: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<u64>().ok());
    if let Some(soft) = soft {
        assert!(
            soft >= needed,
            "this test opens about {needed} file descriptors; `ulimit -n` is {soft}: raise it"
        );
    }
}

// ---------------------------------------------------------------- a process of its own

/// Set in a test binary started by [`alone_in_a_process`].
const ALONE: &str = "INTEGRATION_TEST_ALONE";

/// For a test that reads figures of the whole process (its RSS): runs the test `name` of
/// `module` (`module_path!()` there) in a new process of this test binary, where nothing
/// else runs, and panics if it fails there. Returns `true` in that process, where the
/// test then does its work, and `false` here once it passed.
pub fn alone_in_a_process(module: &str, name: &str) -> bool {
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    // module_path!() starts with the crate's name; test names do not.
    let path = module.split_once("::").map_or(module, |(_, rest)| rest);
    let test = format!("{path}::{name}");
    let binary = std::env::current_exe().expect("the test binary's path");
    let output = std::process::Command::new(binary)
        .args([&test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .expect("start the test binary again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test}, alone in a process: {}\n{stdout}",
        output.status
    );
    false
}

// ---------------------------------------------------------------- reviews

/// The GitLab Runner 16.5 fixture job pod.
pub fn job_pod() -> Value {
    serde_json::from_str(JOB_POD).expect("fixture")
}

/// The fixture job pod, changed by `edit`, in a CREATE review for `namespace`.
pub fn job_pod_review(uid: &str, namespace: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut pod = job_pod();
    edit(&mut pod);
    pod_review(uid, namespace, pod)
}

pub fn pod_review(uid: &str, namespace: &str, pod: Value) -> Value {
    PodReview {
        uid,
        ..PodReview::create(namespace, &pod).by("system:serviceaccount:gitlab:gitlab-runner")
    }
    .to_value()
}

/// The response's patch applied to the review's pod.
pub fn patched_pod(review: &Value, reply: &Value) -> Value {
    let mut pod = review["request"]["object"].clone();
    if let Some(patch) = reply["response"]["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
        json_patch::patch(&mut pod, &patch).expect("the patch applies");
    }
    pod
}

pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .expect("the container")
}
