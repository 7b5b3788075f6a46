//! A real control plane for end-to-end tests: etcd and kube-apiserver (kube-scheduler on
//! request) on loopback, with certificates made here. Shared by the tests of one binary,
//! or owned by one test that would disturb the others.
//!
//! ```ignore
//! let cp = ControlPlane::shared().await;          // started on first use, ~3-6 s
//! let ns = cp.namespace("my-test", &[OPT_IN]).await;
//! let webhook = cp.webhook().await;                // `ci-pod-webhook serve`, registered
//! let stored = ns.create_pod(&job_pod("...")).await.expect("created");
//!
//! let cp = ControlPlane::own("my-test", Options::default()).await; // this test's alone,
//!                                                  // stopped when `cp` is dropped
//! ```
//!
//! The binaries come from `KUBEBUILDER_ASSETS` (controller-runtime's envtest convention):
//! a directory holding `etcd`, `kube-apiserver` and, for scheduling tests,
//! `kube-scheduler`. Everything a control plane writes (certificates, etcd data, each
//! component's log) goes to `target/tmp/kube-e2e/<binary>-<pid>-<name>/`; it is removed
//! when the binary ends (the shared one) or when the owning test ends (an owned one),
//! unless a test failed, and then its path is printed. See docs/e2e.md.

mod cluster;
mod node;
mod pki;
// pub: the real Prometheus of tests/support/prometheus.rs runs under its watchdog too.
pub mod process;
mod proxy;
mod rollout;
mod webhook;

pub use cluster::*;
// Only tests/e2e uses these; the e2e benches and tests/integration.rs include this
// module too.
#[allow(unused_imports)]
pub use node::*;
#[allow(unused_imports)]
pub use proxy::*;
#[allow(unused_imports)]
pub use rollout::*;
pub use webhook::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pki::{Credentials, Pki};
use process::{Component, Watchdog};
use tokio::sync::OnceCell;

/// The opt-in label of the default policy.
pub const OPT_IN: (&str, &str) = ("ci.skao.int/pod-policy", "enabled");
/// The label an admin sets to pin a namespace's runner class.
pub const RUNNER_CLASS: &str = "ci.skao.int/runner-class";
/// How long a loaded 2-core machine may take for anything that should be prompt.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How the control plane is started.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// `false` starts the API server with `DISABLE_HTTP2=1`: it then calls webhooks
    /// over HTTP/1.1, as it does for the `service` webhooks of a real cluster. With
    /// `true` it offers HTTP/2 to the loopback `url` webhooks the tests register.
    pub webhook_http2: bool,
    /// The node's address, for a control plane whose pods reach the API server through
    /// Service `kubernetes` (10.96.0.1:443, routed by kube-proxy): the API server then
    /// listens on every address, advertises this one (an EndpointSlice may not hold a
    /// loopback address) and keeps the Service's endpoints itself (`lease`), and its
    /// certificate also names this address and 10.96.0.1. `None`: loopback only.
    pub advertise: Option<std::net::Ipv4Addr>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            webhook_http2: true,
            advertise: None,
        }
    }
}

/// etcd + kube-apiserver, and whatever the tests started on it.
///
/// Only an owned control plane ([`Self::own`]) is ever dropped (statics never are): its
/// processes are killed as its fields drop, the watchdog last, which then removes the
/// run directory unless a test failed.
pub struct ControlPlane {
    /// The run directory: pki/, etcd-data/, *.log, kubeconfig files.
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    assets: PathBuf,
    pki: Pki,
    kubeconfig: PathBuf,
    shared_webhook: OnceCell<Webhook>,
    scheduler: OnceCell<Component>,
    controller_manager: OnceCell<Component>,
    // Held to be killed when the control plane is dropped.
    _apiserver: Component,
    _etcd: Component,
    service_account: OnceCell<PathBuf>,
    webhooks_started: AtomicU32,
    /// Declared last, so dropped after every component above.
    watchdog: Watchdog,
}

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

impl ControlPlane {
    /// The binary's control plane, started with [`Options::default`] by the first test
    /// that asks; stopped when the binary ends.
    pub async fn shared() -> &'static ControlPlane {
        SHARED
            .get_or_init(|| Self::start("shared", Options::default()))
            .await
    }

    /// A control plane of the calling test's own, for a test that would disturb the
    /// shared one: it stops the webhook, reloads its policy, changes cluster-wide objects
    /// (Nodes, the RuntimeClass, the webhook configuration), counts the webhook's
    /// requests, or needs other [`Options`]. `name` names its run directory. Stopped
    /// when dropped, at the end of the test; its run directory is then removed, unless
    /// the test failed.
    ///
    /// Not serialised: with the tests two at a time on 2 cores, a run holds up to three
    /// API servers (~1.4 GB in all) and takes ~6 s less than with one owned control
    /// plane at a time (docs/e2e.md).
    pub async fn own(name: &str, options: Options) -> ControlPlane {
        Self::start(name, options).await
    }

    async fn start(name: &str, options: Options) -> ControlPlane {
        let assets = assets_dir();
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "e2e".to_string());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("kube-e2e")
            .join(format!("{binary}-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the run directory");
        let watchdog = Watchdog::start(&dir);
        let pki = Pki::generate(&dir, options.advertise);

        let (etcd, etcd_port) =
            process::retry_on_port_clash("etcd", || start_etcd(&assets, &dir, &watchdog)).await;
        let (apiserver, port) = process::retry_on_port_clash("kube-apiserver", || {
            start_apiserver(&assets, &dir, &pki, etcd_port, options, &watchdog)
        })
        .await;
        let server = format!("https://127.0.0.1:{port}");
        let kubeconfig = dir.join("admin.kubeconfig");
        let admin = Credentials::ClientCert {
            cert_pem: &pki.admin_cert_pem,
            key_pem: &pki.admin_key_pem,
        };
        std::fs::write(&kubeconfig, pki::kubeconfig(&server, &pki.ca_pem, &admin))
            .expect("write the admin kubeconfig");
        let cp = ControlPlane {
            dir,
            server,
            assets,
            pki,
            kubeconfig,
            shared_webhook: OnceCell::new(),
            scheduler: OnceCell::new(),
            controller_manager: OnceCell::new(),
            _apiserver: apiserver,
            _etcd: etcd,
            service_account: OnceCell::new(),
            webhooks_started: AtomicU32::new(0),
            watchdog,
        };
        cp.install_cluster_basics().await;
        eprintln!(
            "kube-e2e: control plane at {} (run directory {})",
            cp.server,
            cp.dir.display()
        );
        cp
    }

    /// A client with cluster-admin rights (`system:masters`), for the calling test's
    /// Tokio runtime (a `kube::Client` belongs to the runtime it was made in).
    pub async fn client(&self) -> kube::Client {
        pki::client_for(&self.kubeconfig).await
    }

    /// The API server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("https://127.0.0.1:PORT")
    }

    /// The admin kubeconfig file, for kubectl and for processes.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA that signed the API server's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// Runs kubectl against this control plane; `stdin` is fed to it.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        kubectl(Some(&self.kubeconfig), args, stdin)
    }

    /// Marks the run directory to be kept when the control plane stops, and says where
    /// it is (once).
    pub fn keep_logs(&self) {
        let marker = self.dir.join(process::KEEP_MARKER);
        if marker.exists() {
            return;
        }
        let _ = std::fs::write(marker, b"");
        eprintln!(
            "kube-e2e: a test failed; control-plane logs kept in {} \
             (etcd.log, kube-apiserver.log, webhook-*.log, kube-scheduler.log)",
            self.dir.display()
        );
    }

    /// Starts kube-scheduler (once per control plane) with the admin kubeconfig.
    pub async fn scheduler(&self) -> &Component {
        self.scheduler
            .get_or_init(|| async {
                let bin = asset(&self.assets, "kube-scheduler");
                let mut command = Command::new(bin);
                command
                    .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
                    .args(["--leader-elect=false", "--secure-port=0", "--v=1"]);
                let log = self.dir.join("kube-scheduler.log");
                let scheduler = Component::spawn("kube-scheduler", command, log, &self.watchdog);
                // No health port (--secure-port=0): alive after a moment is enough; the
                // tests wait for the bindings they expect.
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(error) = scheduler.check_running() {
                    self.keep_logs();
                    panic!("{error}");
                }
                scheduler
            })
            .await
    }

    /// Starts kube-controller-manager (once per control plane), for a control plane with
    /// a real node (`node/`): it makes each namespace's ServiceAccount `default` and the
    /// CA ConfigMaps pods mount, lifts the node's not-ready taint, and runs DaemonSets,
    /// namespace deletion and garbage collection.
    pub async fn controller_manager(&self) -> &Component {
        self.controller_manager
            .get_or_init(|| async {
                let bin = asset(&self.assets, "kube-controller-manager");
                let kubeconfig = format!("{}", self.kubeconfig.display());
                let mut command = Command::new(bin);
                command
                    .arg(format!("--kubeconfig={kubeconfig}"))
                    .arg(format!("--authentication-kubeconfig={kubeconfig}"))
                    .arg(format!("--authorization-kubeconfig={kubeconfig}"))
                    .arg(format!(
                        "--service-account-private-key-file={}",
                        self.pki.sa_key.display()
                    ))
                    .arg(format!("--root-ca-file={}", self.pki.ca_cert.display()))
                    .args([
                        "--leader-elect=false",
                        "--secure-port=0",
                        "--use-service-account-credentials=false",
                        // Everything but the certificate signer, which needs the CA's key.
                        "--controllers=*,-csrsigning",
                        "--v=1",
                    ]);
                let log = self.dir.join("kube-controller-manager.log");
                let manager =
                    Component::spawn("kube-controller-manager", command, log, &self.watchdog);
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(error) = manager.check_running() {
                    self.keep_logs();
                    panic!("{error}");
                }
                manager
            })
            .await
    }

    fn next_webhook_number(&self) -> u32 {
        self.webhooks_started.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // An owned control plane ends with its test: a test that panicked before it made
        // a namespace (whose drop would say so) still keeps the logs.
        if std::thread::panicking() {
            self.keep_logs();
        }
    }
}

/// `KUBEBUILDER_ASSETS`, checked.
fn assets_dir() -> PathBuf {
    let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS") else {
        panic!(
            "KUBEBUILDER_ASSETS is not set. The e2e tests need a directory holding etcd and \
             kube-apiserver (and kube-scheduler): e.g. `setup-envtest use -p path`, or unpack \
             ../shared/kube-e2e/bin/*.xz as .ci/run does. See docs/e2e.md."
        )
    };
    let dir = PathBuf::from(dir);
    for name in ["etcd", "kube-apiserver"] {
        asset(&dir, name);
    }
    dir
}

fn asset(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: KUBEBUILDER_ASSETS ({}) must hold etcd, kube-apiserver, \
         kube-scheduler and, for the tests on a real node, kubelet and \
         kube-controller-manager. See docs/e2e.md.",
        path.display(),
        dir.display()
    );
    path
}

/// Runs `ci-pod-webhook doctor -o json` with `kubeconfig` and `args`: its exit code and
/// checks.
pub fn doctor(kubeconfig: &Path, args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let output = Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
        .arg("doctor")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["-o", "json"])
        .args(args)
        .output()
        .expect("run doctor");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let checks = report["checks"].as_array().expect("checks").clone();
    (output.status.code().expect("exit code"), checks)
}

/// Runs kubectl (the one on PATH), with `kubeconfig` if given.
pub fn kubectl(
    kubeconfig: Option<&Path>,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> std::process::Output {
    use std::io::Write as _;
    let mut command = Command::new("kubectl");
    if let Some(path) = kubeconfig {
        command.arg(format!("--kubeconfig={}", path.display()));
    }
    command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!("cannot run kubectl ({e}): the e2e tests need kubectl on PATH (see docs/e2e.md)")
    });
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write kubectl's stdin");
    }
    drop(input);
    child.wait_with_output().expect("kubectl output")
}

async fn start_etcd(
    assets: &Path,
    dir: &Path,
    watchdog: &Watchdog,
) -> Result<(Component, u16), String> {
    let (client, peer) = (process::free_port(), process::free_port());
    let data = dir.join("etcd-data");
    let _ = std::fs::remove_dir_all(&data);
    let config = format!(
        "name: e2e\ndata-dir: {data}\nlisten-client-urls: http://127.0.0.1:{client}\n\
         advertise-client-urls: http://127.0.0.1:{client}\nlisten-peer-urls: http://127.0.0.1:{peer}\n\
         initial-advertise-peer-urls: http://127.0.0.1:{peer}\n\
         initial-cluster: e2e=http://127.0.0.1:{peer}\ninitial-cluster-state: new\n\
         unsafe-no-fsync: true\nlog-level: warn\n",
        data = data.display()
    );
    let config_path = dir.join("etcd.yaml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let mut command = Command::new(asset(assets, "etcd"));
    command.arg("--config-file").arg(&config_path);
    let etcd = Component::spawn("etcd", command, dir.join("etcd.log"), watchdog);
    etcd.wait_until(PATIENCE, || async move {
        process::http_get(client, "/health")
            .await
            .is_some_and(|(status, body)| status == 200 && body.contains(r#""health":"true""#))
    })
    .await?;
    Ok((etcd, client))
}

async fn start_apiserver(
    assets: &Path,
    dir: &Path,
    pki: &Pki,
    etcd_port: u16,
    options: Options,
    watchdog: &Watchdog,
) -> Result<(Component, u16), String> {
    let port = process::free_port();
    let mut command = Command::new(asset(assets, "kube-apiserver"));
    let path = |p: &Path| p.display().to_string();
    let (bind, advertise, reconciler) = match options.advertise {
        Some(address) => ("0.0.0.0".to_string(), address.to_string(), "lease"),
        // 127.0.0.1 is not a valid Endpoints address.
        None => ("127.0.0.1".to_string(), "127.0.0.1".to_string(), "none"),
    };
    command.args([
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        format!("--bind-address={bind}"),
        format!("--advertise-address={advertise}"),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", dir.join("pki").display()),
        format!("--tls-cert-file={}", path(&pki.serving_cert)),
        format!("--tls-private-key-file={}", path(&pki.serving_key)),
        format!("--client-ca-file={}", path(&pki.ca_cert)),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        format!("--service-account-key-file={}", path(&pki.sa_public)),
        format!("--service-account-signing-key-file={}", path(&pki.sa_key)),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        "--authorization-mode=RBAC".into(),
        // GitLab Runner job pods run privileged containers (docker builds).
        "--allow-privileged=true".into(),
        format!("--endpoint-reconciler-type={reconciler}"),
        "--v=1".into(),
    ]);
    if !options.webhook_http2 {
        // k8s.io/apimachinery's SetTransportDefaults: no HTTP/2 on the clients this
        // process makes, webhook clients included.
        command.env("DISABLE_HTTP2", "1");
    }
    let log = dir.join("kube-apiserver.log");
    let apiserver = Component::spawn("kube-apiserver", command, log, watchdog);
    let server = format!("https://127.0.0.1:{port}");
    let probe_config = dir.join("probe.kubeconfig");
    let admin = Credentials::ClientCert {
        cert_pem: &pki.admin_cert_pem,
        key_pem: &pki.admin_key_pem,
    };
    std::fs::write(&probe_config, pki::kubeconfig(&server, &pki.ca_pem, &admin))
        .map_err(|e| e.to_string())?;
    let client = pki::client_for(&probe_config).await;
    apiserver
        .wait_until(Duration::from_secs(60), || {
            let client = client.clone();
            async move {
                let request = hyper::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("request");
                client
                    .request_text(request)
                    .await
                    .is_ok_and(|body| body.trim() == "ok")
            }
        })
        .await?;
    Ok((apiserver, port))
}
