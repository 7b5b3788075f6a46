//! Test harness: real servers on loopback port 0 with generated certificates, and a
//! real HTTPS client (rustls + hyper's connection-level client) whose connections the
//! tests hold explicitly, so keep-alive reuse, ALPN and the served certificate can be
//! checked rather than assumed.
#![allow(dead_code)] // Each test crate uses a different part of the harness.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ci_pod_webhook::certs;
use ci_pod_webhook::server::{Server, Settings};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Bytes, Frame};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

pub const JOB_POD: &str = include_str!("../fixtures/gitlab-runner-16.5-job-pod.json");
/// Generous bound for anything a loaded 2-core machine should do "promptly".
pub const PATIENCE: Duration = Duration::from_secs(10);

pub type ReqBody = BoxBody<Bytes, Infallible>;
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

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
        let generated = write_certs(dir);
        let mut settings = settings(&dir.join("tls.crt"), &dir.join("tls.key"));
        change(&mut settings);
        (
            Running::start(settings).await,
            Client::trusting(&[&generated.ca_cert]),
        )
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
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- client

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// TLS client settings: trusted CAs, optionally a client certificate.
#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    pub fn trusting(cas: &[&str]) -> Client {
        Client::build(cas, None, false)
    }

    pub fn build(cas: &[&str], identity: Option<(&str, &str)>, tls12_only: bool) -> Client {
        let mut roots = RootCertStore::empty();
        for ca in cas {
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.expect("pem")).expect("root");
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("chain");
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
                builder.with_client_auth_cert(chain, key).expect("identity")
            }
        };
        Client {
            config: Arc::new(config),
        }
    }

    /// A TLS stream offering `protocol` in ALPN, with nothing sent on it yet.
    pub async fn tls(&self, addr: SocketAddr, protocol: Protocol) -> Result<TlsStream, String> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![match protocol {
            Protocol::Http1 => b"http/1.1".to_vec(),
            Protocol::Http2 => b"h2".to_vec(),
        }];
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").expect("name");
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))
    }

    /// An HTTP/1.1 TLS stream with nothing sent on it yet.
    pub async fn raw(&self, addr: SocketAddr) -> Result<TlsStream, String> {
        self.tls(addr, Protocol::Http1).await
    }

    /// Opens one TLS connection offering only `protocol` in ALPN.
    pub async fn connect(&self, addr: SocketAddr, protocol: Protocol) -> Result<Conn, String> {
        let tls = self.tls(addr, protocol).await?;
        let session = tls.get_ref().1;
        let peer_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("a server certificate")
            .clone()
            .into_owned();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let (sender, closed) = match protocol {
            Protocol::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| e.to_string())?;
                (
                    Sender::H1(sender),
                    tokio::spawn(async move { drop(conn.await) }),
                )
            }
            Protocol::Http2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| e.to_string())?;
                (
                    Sender::H2(sender),
                    tokio::spawn(async move { drop(conn.await) }),
                )
            }
        };
        Ok(Conn {
            sender,
            peer_cert,
            alpn,
            closed,
        })
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<ReqBody>),
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
}

/// One client connection, held by the test.
pub struct Conn {
    sender: Sender,
    pub peer_cert: CertificateDer<'static>,
    pub alpn: Option<Vec<u8>>,
    /// Ends when the connection is closed (by either side).
    pub closed: JoinHandle<()>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Conn {
    pub async fn send(&mut self, request: Request<ReqBody>) -> Result<Reply, String> {
        let response = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
        }
        .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Reply {
            status,
            headers,
            body: body.to_bytes().to_vec(),
        })
    }

    pub async fn post(&mut self, content_type: &str, body: Vec<u8>) -> Result<Reply, String> {
        self.send(post(content_type, full(body))).await
    }

    pub async fn review(&mut self, review: &Value) -> Reply {
        let reply = self
            .post(
                "application/json",
                serde_json::to_vec(review).expect("json"),
            )
            .await
            .expect("a reply");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply
    }
}

pub fn full(body: Vec<u8>) -> ReqBody {
    Full::new(Bytes::from(body)).boxed()
}

pub fn post(content_type: &str, body: ReqBody) -> Request<ReqBody> {
    Request::post("/mutate")
        .header("host", "localhost")
        .header("content-type", content_type)
        .body(body)
        .expect("request")
}

/// A request body the test feeds chunk by chunk, to keep a request in flight.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl ChannelBody {
    pub fn pair() -> (mpsc::Sender<Bytes>, ReqBody) {
        let (tx, rx) = mpsc::channel(4);
        (tx, ChannelBody(rx).boxed())
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

// ---------------------------------------------------------------- reviews

/// The fixture job pod, changed by `edit`, in a CREATE review for `namespace`.
pub fn job_pod_review(uid: &str, namespace: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut pod: Value = serde_json::from_str(JOB_POD).expect("fixture");
    edit(&mut pod);
    pod_review(uid, namespace, pod)
}

pub fn pod_review(uid: &str, namespace: &str, pod: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"],
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:gitlab:gitlab-runner"},
            "object": pod,
            "dryRun": false
        }
    })
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
