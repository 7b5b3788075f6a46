//! Connections to the webhook as the API server makes them: TLS (trusting a given CA),
//! then HTTP/1.1 keep-alive or HTTP/2, with hyper's connection-level client so that
//! each worker owns exactly the connection it uses.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where and how to connect.
#[derive(Clone)]
pub struct Connector {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    http2: bool,
    /// `/mutate` for HTTP/1.1 (origin form), `https://host:port/mutate` for HTTP/2.
    uri: Uri,
    host: String,
}

impl Connector {
    pub fn new(url: &str, ca_pem: &[u8], server_name: &str, http2: bool) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("--url {url:?}"))?;
        if uri.scheme_str() != Some("https") {
            bail!("--url {url:?}: the webhook speaks https only");
        }
        let authority = uri.authority().context("--url has no host")?.clone();
        let port = authority.port_u16().unwrap_or(443);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(authority.host(), port))
            .with_context(|| format!("cannot resolve {}", authority.host()))?
            .next()
            .context("the host resolves to no address")?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(cert.context("--ca: not a PEM certificate")?)
                .context("--ca: unusable CA certificate")?;
        }
        if roots.is_empty() {
            bail!("--ca: no certificate found");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![if http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request_uri: Uri = if http2 {
            format!("https://{authority}{path}").parse()?
        } else {
            path.parse()?
        };
        Ok(Connector {
            addr,
            server_name: ServerName::try_from(server_name.to_string())
                .with_context(|| format!("--server-name {server_name:?}"))?,
            tls: TlsConnector::from(Arc::new(config)),
            http2,
            uri: request_uri,
            host: authority.to_string(),
        })
    }

    /// Opens one connection: TCP, TLS handshake, HTTP handshake.
    pub async fn open(&self) -> Result<Sender, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let io = TokioIo::new(tls);
        if self.http2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(conn);
            Ok(Sender::Http2(sender))
        } else {
            let (sender, conn) = http1::handshake(io)
                .await
                .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
            tokio::spawn(conn);
            Ok(Sender::Http1(sender))
        }
    }

    /// The POST of one review.
    pub fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if !self.http2 {
            builder = builder.header(header::HOST, self.host.as_str());
        }
        builder.body(Full::new(body)).map_err(|e| e.to_string())
    }
}

/// One open connection's request side.
pub enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    /// Whether the connection can still carry requests.
    pub fn is_open(&self) -> bool {
        match self {
            Sender::Http1(s) => !s.is_closed(),
            Sender::Http2(s) => !s.is_closed(),
        }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), String> {
        let response = match self {
            Sender::Http1(s) => {
                s.ready().await.map_err(|e| format!("connection: {e}"))?;
                s.send_request(request).await
            }
            Sender::Http2(s) => {
                s.ready().await.map_err(|e| format!("connection: {e}"))?;
                s.send_request(request).await
            }
        }
        .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
}
