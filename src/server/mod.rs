//! The admission server: the core behind HTTPS, plus a plain admin port.
//!
//! [`Server::bind`] binds both ports first (port 0 works: tests read the addresses back),
//! so a server that cannot listen touches no file, then loads the certificate, the client
//! CA and the policy, so a bad file fails at start-up.
//! [`Server::run`] serves until its shutdown future resolves, then drains. Signals,
//! logging and the runtime belong to the `serve` command ([`command`]), not to the
//! server, so tests run real servers in-process.

mod admin;
mod budget;
mod deadlines;
mod listener;
pub mod logs;
pub mod peers;
mod reload;
pub mod signal;
pub mod tls;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::metrics::{self, Metrics};
use crate::trusted_peers::TrustedPeers;
use ci_pod_webhook_core::policy::{Policy, PolicyError};
use reload::Watched;
use tls::{CertStore, ClientCaStore, TlsError};
use webhook::Webhook;

/// What the server is started with; the `serve` flags, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// When set, only clients with a certificate signed by one of these CAs get in.
    pub client_ca: Option<PathBuf>,
    /// `None`: the embedded default policy.
    pub policy: Option<PathBuf>,
    /// Where namespace labels come from (and the watches of the cluster).
    pub cluster: Cluster,
    /// The namespace the webhook runs in: `gpuWorkloads` never applies there.
    pub webhook_namespace: Option<String>,
    /// The API server's source addresses: never refused, served first (see `peers`).
    /// Empty: every address is treated alike.
    pub trusted_peers: TrustedPeers,
    pub limits: Limits,
    /// How often the certificate and policy files are checked for changes.
    pub reload_interval: Duration,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
}

/// Bounds on what one client can make the server hold.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// All request bodies held at once, together (see `budget`).
    pub max_buffered_bytes: usize,
    pub max_connections: usize,
    /// Open connections from one source address (see `peers`).
    pub max_connections_per_address: usize,
    /// Connections from one source address between their accept and the end of their
    /// TLS handshake.
    pub max_handshakes_per_address: usize,
    /// With trusted peers: connections from all untrusted addresses together between
    /// their accept and the end of their TLS handshake.
    pub max_untrusted_handshakes: usize,
    /// From the accept to the client's first byte (a TLS client sends its hello at once).
    pub first_byte_timeout: Duration,
    /// A request's head (HTTP/1.1), from its first byte; for a new connection, from the
    /// end of the TLS handshake.
    pub header_read_timeout: Duration,
    /// An HTTP/1.1 connection idle between two requests.
    pub keep_alive_timeout: Duration,
    /// An HTTP/1.1 write that makes no progress (a client that does not read).
    pub send_timeout: Duration,
    pub handshake_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // The API server caps request bodies at 3 MiB.
            max_body_bytes: 4 * 1024 * 1024,
            // Eight whole bodies; well inside the Deployment's 128 Mi memory limit.
            max_buffered_bytes: 32 * 1024 * 1024,
            max_connections: 1024,
            // The API server opens one connection per review in flight beyond the up to
            // 25 it keeps idle, and several API servers may share one address (a
            // konnectivity agent, SNAT): room for hundreds, a quarter of the total.
            max_connections_per_address: 256,
            // A burst of reviews opens that many connections at once; a handshake takes
            // about a millisecond of CPU, so even a large burst is through in tens of ms.
            max_handshakes_per_address: 128,
            // No one but the API server needs to call the webhook once its addresses are
            // trusted; what this bounds is how many slots silent connections from many
            // addresses can hold (they cannot be evicted before their handshake ends).
            // As many as one address may have, so that an API server address missing
            // from --trusted-peers still gets through its bursts when there is no flood.
            max_untrusted_handshakes: 128,
            // A client's TLS hello follows its connect at once; 2 s also covers a few
            // lost-segment retransmits.
            first_byte_timeout: Duration::from_secs(2),
            header_read_timeout: Duration::from_secs(2),
            // Longer than the API server keeps an idle connection (Go's 90 s), so that it
            // is always the one to close: a close from our side could meet a review it
            // has just sent on that connection.
            keep_alive_timeout: Duration::from_secs(120),
            // Answers are at most a few hundred KB, which the kernel's socket buffers
            // take at once from a client that reads at all.
            send_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            // Above any admission webhook timeout the API server allows (30 s).
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Settings {
    /// Defaults for everything but the serving certificate.
    pub fn new(tls_cert: PathBuf, tls_key: PathBuf) -> Self {
        Settings {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            tls_cert,
            tls_key,
            client_ca: None,
            policy: None,
            cluster: Cluster::default(),
            webhook_namespace: None,
            trusted_peers: TrustedPeers::default(),
            limits: Limits::default(),
            reload_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("serving certificate")]
    Certificate(#[source] std::io::Error),
    #[error("client CA")]
    ClientCa(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("policy file {0}: not UTF-8 text")]
    PolicyEncoding(String),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A server with its files loaded and its ports bound, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct Server {
    settings: Settings,
    webhook_listener: TcpListener,
    admin_listener: TcpListener,
    webhook_addr: SocketAddr,
    admin_addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    certs: Arc<CertStore>,
    cert_files: Watched,
    policy_files: Option<Watched>,
    client_ca: Option<(Watched, Arc<ClientCaStore>)>,
    webhook: Arc<Webhook>,
    metrics: Metrics,
    registry: Arc<Registry>,
}

/// The webhook and admin ports, bound before any file is written or read: a second
/// `serve` started on ports in use fails here, before it could overwrite the development
/// certificate of the one already running (they share the default `--cert-dir`).
#[derive(Debug)]
pub struct Listeners {
    webhook: TcpListener,
    admin: TcpListener,
}

impl Listeners {
    pub async fn bind(webhook: SocketAddr, admin: SocketAddr) -> Result<Listeners, ServerError> {
        Ok(Listeners {
            webhook: bind(webhook).await?,
            admin: bind(admin).await?,
        })
    }
}

impl Server {
    /// Binds both ports, then loads the certificate and policy (failing on a bad one).
    pub async fn bind(settings: Settings) -> Result<Server, ServerError> {
        let listeners = Listeners::bind(settings.listen, settings.admin_listen).await?;
        Server::with_listeners(settings, listeners).await
    }

    /// [`Server::bind`] on ports already bound.
    pub async fn with_listeners(
        settings: Settings,
        listeners: Listeners,
    ) -> Result<Server, ServerError> {
        let provider = tls::provider();
        let mut registry = metrics::new_registry();
        let metrics = Metrics::register(&mut registry);

        let cert_paths = vec![settings.tls_cert.clone(), settings.tls_key.clone()];
        let (cert_files, pem) = Watched::read_now(cert_paths).map_err(ServerError::Certificate)?;
        let key = tls::certified_key(
            &pem[0],
            &pem[1],
            &settings.tls_cert,
            &settings.tls_key,
            &provider,
        )?;
        let certs = Arc::new(CertStore::new(key));
        let client_ca = match &settings.client_ca {
            None => None,
            Some(path) => {
                let (watched, pem) =
                    Watched::read_now(vec![path.clone()]).map_err(ServerError::ClientCa)?;
                let verifier = tls::client_verifier(&pem[0], path, provider.clone())?;
                Some((watched, Arc::new(ClientCaStore::new(verifier))))
            }
        };
        let tls = tls::server_config(
            provider,
            certs.clone(),
            client_ca.as_ref().map(|(_, store)| store.clone()),
        )?;

        let own = settings.webhook_namespace.as_deref();
        let (policy, policy_files) = match &settings.policy {
            None => (in_namespace(Policy::embedded(), own), None),
            Some(path) => {
                let (watched, text) =
                    Watched::read_now(vec![path.clone()]).map_err(|source| PolicyError::Read {
                        path: path.display().to_string(),
                        source,
                    })?;
                (
                    in_namespace(parse_policy(&text[0], path)?, own),
                    Some(watched),
                )
            }
        };
        let webhook = Arc::new(Webhook::new(
            policy,
            settings.cluster.clone(),
            metrics.clone(),
            settings.limits.max_body_bytes,
            settings.limits.max_buffered_bytes,
            !settings.trusted_peers.is_empty(),
        ));

        let Listeners {
            webhook: webhook_listener,
            admin: admin_listener,
        } = listeners;
        Ok(Server {
            webhook_addr: local_addr(&webhook_listener, settings.listen)?,
            admin_addr: local_addr(&admin_listener, settings.admin_listen)?,
            webhook_listener,
            admin_listener,
            tls: Arc::new(tls),
            certs,
            cert_files,
            policy_files,
            client_ca,
            webhook,
            metrics,
            registry: Arc::new(registry),
            settings,
        })
    }

    /// The webhook (HTTPS) address actually bound.
    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook_addr
    }

    /// The admin (plain HTTP) address actually bound.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The policy in force when the server was bound.
    pub fn policy(&self) -> Arc<webhook::ActivePolicy> {
        self.webhook.policy()
    }

    /// Serves until `shutdown` resolves, then drains: `/readyz` fails at once, no new
    /// connection is accepted, requests in flight finish (up to the drain timeout).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            settings,
            webhook_listener,
            admin_listener,
            tls,
            certs,
            cert_files,
            policy_files,
            client_ca,
            webhook,
            metrics,
            registry,
            ..
        } = self;
        let draining = CancellationToken::new();
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let cert_paths = (settings.tls_cert.clone(), settings.tls_key.clone());
        let provider = tls.crypto_provider().clone();
        tasks.spawn(reload::watch(
            "certificate",
            cert_files,
            settings.reload_interval,
            metrics.certificate_reloads.clone(),
            stop.clone(),
            move |pem| {
                let key =
                    tls::certified_key(&pem[0], &pem[1], &cert_paths.0, &cert_paths.1, &provider)?;
                certs.replace(key);
                Ok(())
            },
        ));
        if let (Some((watched, store)), Some(path)) = (client_ca, settings.client_ca.clone()) {
            let provider = tls.crypto_provider().clone();
            tasks.spawn(reload::watch(
                "client CA",
                watched,
                settings.reload_interval,
                metrics.certificate_reloads.clone(),
                stop.clone(),
                move |pem| {
                    store.replace(tls::client_verifier(&pem[0], &path, provider.clone())?);
                    Ok(())
                },
            ));
        }
        if let (Some(watched), Some(path)) = (policy_files, settings.policy.clone()) {
            let webhook = webhook.clone();
            let own = settings.webhook_namespace.clone();
            tasks.spawn(reload::watch(
                "policy",
                watched,
                settings.reload_interval,
                metrics.policy_reloads.clone(),
                stop.clone(),
                move |text| {
                    let policy = in_namespace(parse_policy(&text[0], &path)?, own.as_deref());
                    tracing::info!(policy = %policy.origin, hash = %policy.hash, "policy in force");
                    webhook.set_policy(policy);
                    Ok(())
                },
            ));
        }

        observe_job_pods(&settings.cluster, &webhook, &metrics);
        watch_job_pods(&settings.cluster, &webhook, &metrics);

        let admin = admin::app(admin::Admin {
            registry,
            webhook: webhook.clone(),
            draining: draining.clone(),
        });
        let admin_stop = stop.clone();
        tasks.spawn(async move {
            let serve = axum::serve(admin_listener, admin)
                .with_graceful_shutdown(admin_stop.cancelled_owned());
            if let Err(error) = serve.await {
                tracing::error!(%error, "admin server failed");
            }
        });

        if settings.trusted_peers.is_empty() {
            tracing::warn!(
                "no --trusted-peers: the API server's connections are treated like anyone \
                 else's, so connections from many addresses can hold every slot and keep \
                 reviews waiting past the API server's timeout (with failurePolicy Ignore, \
                 pods are then admitted without their class); set --trusted-peers \
                 (CI_POD_WEBHOOK_TRUSTED_PEERS) to the API server's source addresses \
                 (docs/network.md)"
            );
        } else {
            tracing::info!(
                trusted_peers = %settings.trusted_peers,
                "connections from these addresses are never refused and are served first"
            );
        }
        let timeout = settings.limits.request_timeout;
        let apps = listener::Apps {
            untrusted: webhook::app(webhook.clone(), timeout),
            trusted: webhook::trusted_app(webhook, timeout),
        };
        let serve = listener::serve(
            webhook_listener,
            TlsAcceptor::from(tls),
            apps,
            &settings.limits,
            &settings.trusted_peers,
            metrics,
            draining.clone(),
            settings.drain_timeout,
        );
        let signal = async {
            shutdown.await;
            tracing::info!("shutting down: not ready, draining");
            draining.cancel();
        };
        tokio::join!(signal, serve);

        stop.cancel();
        // The admin port lets idle scrapers go at once; do not wait on a stuck one.
        if tokio::time::timeout(Duration::from_secs(1), async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tasks.shutdown().await;
        }
        tracing::info!("stopped");
    }
}

/// The job-pod watch also exports every job pod's class (`job_pod_info`) and counts
/// container terminations from now on (`cluster::job_pod_series`), by the policy in force.
fn observe_job_pods(cluster: &Cluster, webhook: &Arc<Webhook>, metrics: &Metrics) {
    use crate::cluster::job_pod_series::{self, JobPodSeries};
    let classifying = webhook.clone();
    cluster.observe_job_pods(JobPodSeries {
        classify: Box::new(move |namespace, labels, pod| {
            job_pod_series::classify(&classifying.policy().policy, namespace, labels, pod)
        }),
        info: metrics.job_pod_info.clone(),
        terminations: metrics.job_container_terminations.clone(),
        since: time::OffsetDateTime::now_utc(),
    });
}

/// `policy`, told the namespace the webhook runs in.
fn in_namespace(mut policy: Policy, namespace: Option<&str>) -> Policy {
    if let Some(namespace) = namespace {
        policy.set_webhook_namespace(namespace);
    }
    policy
}

/// The live audit (`cluster::pods`), judged by the policy in force, when there is a
/// cluster. It stops with the cluster's other watches.
fn watch_job_pods(cluster: &Cluster, webhook: &Arc<Webhook>, metrics: &Metrics) {
    let judging = webhook.clone();
    let judge = crate::cluster::pods::Judge::new(move || judging.policy());
    if cluster
        .watch_job_pods(judge, metrics.job_pods.clone(), webhook.policy_changes())
        .is_some()
    {
        tracing::info!(
            selector = crate::cluster::pods::JOB_POD_SELECTOR,
            "watching job pods"
        );
    }
}

fn parse_policy(bytes: &[u8], path: &std::path::Path) -> Result<Policy, ServerError> {
    let origin = path.display().to_string();
    let text =
        std::str::from_utf8(bytes).map_err(|_| ServerError::PolicyEncoding(origin.clone()))?;
    let policy = Policy::parse(text, &origin)?;
    // Valid but risky: logged on every load, as `check-policy` prints them.
    for warning in policy.warnings() {
        tracing::warn!(policy = %origin, %warning, "policy warning");
    }
    Ok(policy)
}

/// Connections the kernel completes and queues before the server accepts them: at
/// `--max-connections` the server stops accepting, and a burst queues here. Tokio's
/// `TcpListener::bind` asks for 128; a client queued past that believes it is connected
/// while the kernel drops its handshake (seen with 300 connections opened at once in
/// tests/integration/slow_clients.rs). The kernel caps it at net.core.somaxconn (4096 on current
/// kernels).
const LISTEN_BACKLOG: u32 = 1024;

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let error = |source| ServerError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(error)?;
    // As TcpListener::bind does: a restarted server can bind while old connections linger.
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    socket.listen(LISTEN_BACKLOG).map_err(error)
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })
}
