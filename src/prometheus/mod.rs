//! A small client of Prometheus' HTTP API: instant queries (`/api/v1/query`) and
//! nothing else, for `sizing`.
//!
//! It speaks to Prometheus as Prometheus' own clients do: a base URL that may carry a
//! path prefix (`https://monitoring.example/prometheus`), an optional bearer token,
//! and the system's CA certificates or a `--ca-file`. Queries go as a form POST, so a
//! long PromQL expression never meets a URL length limit, with Prometheus' own
//! `timeout` parameter beside the client's, so a query given up on is also stopped on
//! the server.
//!
//! Every failure is an [`Error`] whose message is one line that says what to fix:
//! Prometheus unreachable, a certificate it does not trust, a token refused, a query
//! refused (with Prometheus' own words). HTTPS uses the server's rustls with ring;
//! HTTP/1.1 only: one query at a time needs nothing more.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// A Prometheus that does not accept a connection in this time is unreachable (a
/// firewall that drops packets would otherwise hold the command for --timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach one Prometheus.
#[derive(Debug, Clone)]
pub struct Config {
    /// The base URL, as `--prometheus` gives it.
    pub url: String,
    /// Sent as `Authorization: Bearer …`.
    pub bearer_token: Option<String>,
    /// CA certificates (PEM) to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Bounds each query, on both sides.
    pub timeout: Duration,
}

/// A Prometheus client. Cheap to clone.
#[derive(Clone)]
pub struct Prometheus {
    /// The base URL without a trailing `/`, for messages.
    url: String,
    /// `<base>/api/v1/query`.
    query_uri: Uri,
    token: Option<String>,
    timeout: Duration,
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Prometheus {
    // The token stays out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

/// One element of an instant vector: its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// A label's value; `""` when the series does not have it, as in PromQL.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// An instant query's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub samples: Vec<Sample>,
    /// Prometheus' warnings (a partial answer, for example).
    pub warnings: Vec<String>,
}

/// Why a query got no answer. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--prometheus {url:?} is not an http:// or https:// URL (example: http://prometheus-operated.monitoring:9090)"
    )]
    BadUrl { url: String },
    #[error("cannot read --ca-file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    TlsSetup(String),
    #[error("no system CA certificates to check {url} with ({reason}): pass --ca-file")]
    NoRoots { url: String, reason: String },
    #[error("cannot reach Prometheus at {url}: {reason}{hint}")]
    Unreachable {
        url: String,
        reason: String,
        hint: &'static str,
    },
    #[error("Prometheus at {url} did not answer within {}s (--timeout)", timeout.as_secs())]
    Timeout { url: String, timeout: Duration },
    #[error("Prometheus at {url} refused the request with HTTP {status}: {hint}")]
    Refused {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error(
        "{url}/api/v1/query answered HTTP {status}{body}: is this Prometheus' URL, with its path prefix?"
    )]
    NotPrometheus {
        url: String,
        status: u16,
        body: String,
    },
    #[error("Prometheus at {url} refused the query ({error_type}): {message}")]
    Query {
        url: String,
        error_type: String,
        message: String,
    },
    #[error("Prometheus at {url} sent an answer that is not the query API's JSON: {reason}")]
    BadAnswer { url: String, reason: String },
}

impl Prometheus {
    /// A client for `config`. Reads the CA file, so a wrong path fails here, before any
    /// query. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// The URL is not http(s), the CA file cannot be read, or HTTPS has no roots.
    pub fn new(config: &Config) -> Result<Self, Error> {
        let url = config.url.trim_end_matches('/').to_string();
        let bad_url = || Error::BadUrl {
            url: config.url.clone(),
        };
        let base: Uri = url.parse().map_err(|_| bad_url())?;
        let https = match base.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad_url()),
        };
        if base.host().is_none() || base.query().is_some() {
            return Err(bad_url());
        }
        let query_uri: Uri = format!("{url}/api/v1/query")
            .parse()
            .map_err(|_| bad_url())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match (&config.ca_file, https) {
            (Some(path), _) => builder.with_tls_config(tls_config(provider, ca_roots(path)?)?),
            // The system's CA certificates (rustls-native-certs, through hyper-rustls).
            (None, true) => builder
                .with_provider_and_native_roots(provider)
                .map_err(|e| Error::NoRoots {
                    url: url.clone(),
                    reason: e.to_string(),
                })?,
            // Plain HTTP needs no roots, and a machine without any must not fail for it.
            (None, false) => {
                builder.with_tls_config(tls_config(provider, rustls::RootCertStore::empty())?)
            }
        };
        let mut tcp = HttpConnector::new();
        // hyper-rustls connects the TLS itself: the TCP connector must accept https.
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = builder.https_or_http().enable_http1().wrap_connector(tcp);
        let http = HttpClient::builder(TokioExecutor::new()).build(connector);
        Ok(Prometheus {
            url,
            query_uri,
            token: config.bearer_token.clone(),
            timeout: config.timeout,
            http,
        })
    }

    /// The base URL, as given (without a trailing `/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `promql` as an instant query at `time` (Unix seconds); its answer must be
    /// an instant vector. Samples whose value is not a finite number are left out.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn query(&self, promql: &str, time: i64) -> Result<Answer, Error> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .append_pair("time", &time.to_string())
            .append_pair("timeout", &format!("{}s", self.timeout.as_secs().max(1)))
            .finish();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.query_uri.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("ci-pod-webhook/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.bad_answer(e.to_string()))?;
        // A little more than Prometheus' own timeout, so its error says what happened.
        let patience = self.timeout + Duration::from_secs(5);
        let (status, body) = tokio::time::timeout(patience, self.exchange(request))
            .await
            .map_err(|_| Error::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            })??;
        answer::decode(&self.url, status, &body, self.token.is_some())
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), Error> {
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(&e))?
            .to_bytes();
        Ok((status, body))
    }

    fn unreachable(&self, error: &(dyn std::error::Error + 'static)) -> Error {
        let reason = innermost(error);
        let hint = if reason.contains("certificate") || reason.contains("UnknownIssuer") {
            " (pass the CA that signed Prometheus' certificate with --ca-file)"
        } else {
            ""
        };
        Error::Unreachable {
            url: self.url.clone(),
            reason,
            hint,
        }
    }

    fn bad_answer(&self, reason: String) -> Error {
        Error::BadAnswer {
            url: self.url.clone(),
            reason,
        }
    }
}

fn tls_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    roots: rustls::RootCertStore,
) -> Result<rustls::ClientConfig, Error> {
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsSetup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `--ca-file`'s certificates: every PEM certificate in it.
fn ca_roots(path: &Path) -> Result<rustls::RootCertStore, Error> {
    let ca_error = |reason: String| Error::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ca_error(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ca_error(format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no PEM certificate in it".to_string()));
    }
    Ok(roots)
}

/// The last error of a chain: hyper-util's outer ones ("client error (Connect)") say
/// less than the I/O or TLS error at the bottom.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(source) = last.source() {
        last = source;
    }
    last.to_string()
}

/// `value` as a PromQL string literal (double quotes, escaped).
pub fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `values` as an anchored RE2 alternation that matches exactly them.
pub fn exact_alternation<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let escaped: Vec<String> = values.into_iter().map(regex_escape).collect();
    escaped.join("|")
}

fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

mod answer;
#[cfg(test)]
mod tests;
