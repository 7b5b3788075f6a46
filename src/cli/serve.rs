//! `ci-pod-webhook serve`: its flags, typed, each with a `CI_POD_WEBHOOK_*` environment
//! fallback and turned once into the server's [`Settings`]; then logs, runtime, signals,
//! the ports, development certificates, the view of the cluster, the server. The ports
//! come before the certificates, so a `serve` that cannot listen writes nothing.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

use crate::certs;
use crate::cluster::{Cluster, KubeMode, Place};
use crate::server::logs::{self, LogGuard};
use crate::server::{Limits, Listeners, Server, Settings, signal};
use crate::trusted_peers::{CidrError, TrustedPeers};

/// `ci-pod-webhook serve`: the admission webhook over HTTPS and the admin port.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the webhook port (HTTPS: HTTP/1.1 and HTTP/2).
    #[arg(
        long,
        env = "CI_POD_WEBHOOK_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,
    /// Address of the admin port (plain HTTP): /livez, /readyz, /metrics.
    #[arg(
        long,
        env = "CI_POD_WEBHOOK_ADMIN_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_listen: SocketAddr,
    /// Serving certificate chain (PEM), reloaded when it changes. Without --tls-cert and
    /// --tls-key a development certificate for localhost is generated in --cert-dir.
    #[arg(
        long,
        env = "CI_POD_WEBHOOK_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM), reloaded with it.
    #[arg(
        long,
        env = "CI_POD_WEBHOOK_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Accept only clients with a certificate signed by a CA in this PEM file.
    #[arg(long, env = "CI_POD_WEBHOOK_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Policy file (YAML), reloaded when it changes. Default: the embedded policy.
    #[arg(long, env = "CI_POD_WEBHOOK_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Where the development certificate goes (ca.crt, tls.crt, tls.key) when no
    /// --tls-cert is given [default: $TMPDIR/ci-pod-webhook-dev-certs].
    #[arg(long, env = "CI_POD_WEBHOOK_CERT_DIR", value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Log filter: a level (error, warn, info, debug, trace) or directives such as
    /// `info,ci_pod_webhook=debug`.
    #[arg(long, env = "CI_POD_WEBHOOK_LOG_LEVEL", value_name = "FILTER", default_value = "info", value_parser = parse_filter)]
    pub log_level: String,
    /// Log line format.
    #[arg(long, env = "CI_POD_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Where namespace labels come from.
    #[arg(long, env = "CI_POD_WEBHOOK_KUBE", value_enum, default_value_t = Kube::Auto)]
    pub kube: Kube,
    /// The namespace the webhook runs in (the Deployment sets it from the downward API):
    /// the policy's gpuWorkloads never applies there, nor in kube-system, kube-public and
    /// kube-node-lease.
    #[arg(long, env = "CI_POD_WEBHOOK_NAMESPACE", value_name = "NAMESPACE", value_parser = parse_namespace)]
    pub webhook_namespace: Option<String>,
    /// Largest request body accepted (larger: HTTP 413).
    #[arg(long, env = "CI_POD_WEBHOOK_MAX_BODY_BYTES", value_name = "BYTES", default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most request-body bytes held in memory by all requests together; further bytes
    /// wait in the clients' sockets. Raised to --max-body-bytes if below it.
    #[arg(long, env = "CI_POD_WEBHOOK_MAX_BUFFERED_BYTES", value_name = "BYTES", default_value_t = Limits::default().max_buffered_bytes)]
    pub max_buffered_bytes: usize,
    /// Most webhook connections open at once; more wait to be accepted.
    #[arg(long, env = "CI_POD_WEBHOOK_MAX_CONNECTIONS", value_name = "N", default_value_t = Limits::default().max_connections, value_parser = parse_positive)]
    pub max_connections: usize,
    /// Most webhook connections open at once from one source address; more are closed as
    /// soon as accepted. The API server connects from a few addresses (docs/network.md).
    #[arg(long, env = "CI_POD_WEBHOOK_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N", default_value_t = Limits::default().max_connections_per_address, value_parser = parse_positive)]
    pub max_connections_per_address: usize,
    /// Most connections from one source address that have not finished their TLS
    /// handshake (silent ones included); more are closed as soon as accepted.
    #[arg(long, env = "CI_POD_WEBHOOK_MAX_HANDSHAKES_PER_ADDRESS", value_name = "N", default_value_t = Limits::default().max_handshakes_per_address, value_parser = parse_positive)]
    pub max_handshakes_per_address: usize,
    /// The API server's source addresses, as CIDR ranges or addresses separated by
    /// commas (e.g. 10.0.0.10/32,10.0.0.11/32): their connections are never refused
    /// and are served first; other addresses are refused at --max-connections, and their
    /// idle connections are closed to make room for the API server's. Empty: every
    /// address is treated alike, and the server warns at start-up (docs/network.md says
    /// how to find the addresses).
    #[arg(long, env = "CI_POD_WEBHOOK_TRUSTED_PEERS", value_name = "CIDR,…", default_value = "", hide_default_value = true, value_parser = parse_trusted_peers)]
    pub trusted_peers: TrustedPeers,
    /// With --trusted-peers: most connections from all other addresses together that have
    /// not finished their TLS handshake (silent ones included); more are closed as soon
    /// as accepted.
    #[arg(long, env = "CI_POD_WEBHOOK_MAX_UNTRUSTED_HANDSHAKES", value_name = "N", default_value_t = Limits::default().max_untrusted_handshakes, value_parser = parse_positive)]
    pub max_untrusted_handshakes: usize,
    /// After SIGTERM, how long requests in flight may take to finish (e.g. 20s, 500ms).
    #[arg(long, env = "CI_POD_WEBHOOK_DRAIN_TIMEOUT", value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// How often the certificate and policy files are checked for changes.
    #[arg(long, env = "CI_POD_WEBHOOK_RELOAD_INTERVAL", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub reload_interval: Duration,
}

/// `--kube`: whether the webhook talks to the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kube {
    /// Watch the cluster when a kubeconfig or in-cluster config is found; else as `off`,
    /// but in a pod (KUBERNETES_SERVICE_HOST set) not Ready until it has cluster access.
    Auto,
    /// Never contact the API server; trust the webhook configuration's namespaceSelector.
    Off,
}

impl From<Kube> for KubeMode {
    fn from(kube: Kube) -> KubeMode {
        match kube {
            Kube::Auto => KubeMode::Auto,
            Kube::Off => KubeMode::Off,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    /// The directory for development certificates.
    pub fn cert_dir(&self) -> PathBuf {
        self.cert_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("ci-pod-webhook-dev-certs"))
    }

    /// The server's settings, given the certificate to serve and the view of the cluster.
    pub fn settings(&self, tls_cert: PathBuf, tls_key: PathBuf, cluster: Cluster) -> Settings {
        Settings {
            listen: self.listen,
            admin_listen: self.admin_listen,
            tls_cert,
            tls_key,
            client_ca: self.client_ca.clone(),
            policy: self.policy.clone(),
            cluster,
            webhook_namespace: self.webhook_namespace.clone(),
            trusted_peers: self.trusted_peers.clone(),
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_buffered_bytes: self.max_buffered_bytes,
                max_connections: self.max_connections,
                max_connections_per_address: self.max_connections_per_address,
                max_handshakes_per_address: self.max_handshakes_per_address,
                max_untrusted_handshakes: self.max_untrusted_handshakes,
                ..Limits::default()
            },
            reload_interval: self.reload_interval,
            drain_timeout: self.drain_timeout,
        }
    }
}

fn parse_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

fn parse_namespace(text: &str) -> Result<String, String> {
    if ci_pod_webhook_core::policy::is_dns_label(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a namespace name (lower-case letters, digits and -)"
        ))
    }
}

fn parse_trusted_peers(text: &str) -> Result<TrustedPeers, String> {
    text.parse().map_err(|e: CidrError| e.to_string())
}

fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a whole number above 0, got {text:?}")),
    }
}

/// `500ms`, `5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as 500ms, 5s or 2m, got {text:?}"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?}: use ms, s or m"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Exit code after a second signal cut the drain short (128 + SIGINT, as shells do).
const ABORTED: u8 = 130;

/// Runs the server until a signal; returns once it has drained.
pub fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let _logs = init_logging(&args.log_level, args.log_format)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting ci-pod-webhook"
    );

    // One worker per available core (cgroup CPU limits included), unless
    // TOKIO_WORKER_THREADS says otherwise (the Deployment sets it: without a CPU limit a
    // CI node would otherwise get dozens of workers).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(async {
        // First, so that a signal during start-up also ends in an orderly way.
        let (first, second) = signal::two_stage().context("cannot install signal handlers")?;
        // The ports before the certificate: a second `serve` on ports in use must fail
        // before it overwrites the running one's development certificate.
        let listeners = Listeners::bind(args.listen, args.admin_listen).await?;
        let (tls_cert, tls_key, dev_ca, _cert_dir_lock) = certificate(args)?;
        let cluster = Cluster::connect(args.kube.into(), Place::of_this_process()).await?;
        let settings = args.settings(tls_cert, tls_key, cluster.clone());
        let server = Server::with_listeners(settings, listeners).await?;
        let active = server.policy();
        tracing::info!(
            webhook = %server.webhook_addr(),
            admin = %server.admin_addr(),
            policy = %active.policy.origin,
            policy_hash = %active.policy.hash,
            workers = tokio::runtime::Handle::current().metrics().num_workers(),
            "listening"
        );
        if let Some(ca) = &dev_ca {
            tracing::info!(
                "try: curl --cacert {} -H 'content-type: application/json' \
                 --data-binary @tests/fixtures/job-pod-review.json https://localhost:{}/mutate",
                ca.display(),
                server.webhook_addr().port()
            );
        }
        let code = tokio::select! {
            () = server.run(first) => ExitCode::SUCCESS,
            () = second => ExitCode::from(ABORTED),
        };
        // The watches stop once the server has drained.
        cluster.stop();
        Ok::<_, anyhow::Error>(code)
    })?;
    // Connections a second signal cut short are not waited for.
    runtime.shutdown_background();
    Ok(code)
}

/// The serving certificate's files, and, for a development certificate (no TLS flags:
/// one is made in --cert-dir), the CA file a client needs and the directory's lock.
type Certificate = (
    PathBuf,
    PathBuf,
    Option<PathBuf>,
    Option<certs::DevCertLock>,
);

fn certificate(args: &ServeArgs) -> anyhow::Result<Certificate> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok((cert.clone(), key.clone(), None, None));
    }
    let dir = args.cert_dir();
    let lock = certs::write_dev_certs(&dir).context("cannot write the development certificate")?;
    let ca = dir.join(certs::CA_CERT);
    tracing::info!(
        cert_dir = %dir.display(),
        ca = %ca.display(),
        "no --tls-cert: generated a development certificate for localhost and 127.0.0.1"
    );
    Ok((
        dir.join(certs::TLS_CERT),
        dir.join(certs::TLS_KEY),
        Some(ca),
        Some(lock),
    ))
}

/// Logs to stdout through a background writer (`logs`), so that a slow log pipe never
/// blocks a review; the guard writes what is left when `serve` returns.
fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_new(filter).with_context(|| format!("--log-level {filter:?}"))?;
    let (writer, guard) =
        logs::spawn(std::io::stdout()).context("cannot start the log writer thread")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(guard)
}

#[cfg(test)]
mod tests;
