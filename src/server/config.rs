//! The `serve` flags: typed, each with a `CI_POD_WEBHOOK_*` environment fallback, and
//! turned once into the server's [`Settings`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Limits, Settings};
use crate::cluster::{Cluster, KubeMode};

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
    #[arg(long, env = "CI_POD_WEBHOOK_KUBE", value_enum, default_value_t = KubeMode::Auto)]
    pub kube: KubeMode,
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
    /// After SIGTERM, how long requests in flight may take to finish (e.g. 20s, 500ms).
    #[arg(long, env = "CI_POD_WEBHOOK_DRAIN_TIMEOUT", value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// How often the certificate and policy files are checked for changes.
    #[arg(long, env = "CI_POD_WEBHOOK_RELOAD_INTERVAL", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub reload_interval: Duration,
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
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_buffered_bytes: self.max_buffered_bytes,
                max_connections: self.max_connections,
                max_connections_per_address: self.max_connections_per_address,
                max_handshakes_per_address: self.max_handshakes_per_address,
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

#[cfg(test)]
mod tests;
