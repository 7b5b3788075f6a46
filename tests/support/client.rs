//! The test client: rustls plus hyper's connection-level client, so a test holds each
//! connection itself and can check ALPN, the served certificate and keep-alive reuse.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Bytes, Frame};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

pub type ReqBody = BoxBody<Bytes, Infallible>;
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// TLS client settings: trusted CAs, optionally a client certificate.
#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
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
            server_name: ServerName::try_from("localhost").expect("name"),
        }
    }

    /// The same client, checking the server's certificate against another name.
    pub fn expecting(mut self, name: &str) -> Client {
        self.server_name = ServerName::try_from(name.to_string()).expect("name");
        self
    }

    /// A TLS stream offering `protocol` in ALPN, with nothing sent on it yet.
    pub async fn tls(&self, addr: SocketAddr, protocol: Protocol) -> Result<TlsStream, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        self.tls_on(tcp, protocol).await
    }

    /// TLS on a TCP connection the test made itself (to set socket options).
    pub async fn tls_on(&self, tcp: TcpStream, protocol: Protocol) -> Result<TlsStream, String> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![match protocol {
            Protocol::Http1 => b"http/1.1".to_vec(),
            Protocol::Http2 => b"h2".to_vec(),
        }];
        // As Go (the API server) does: no Nagle delay on small writes such as HTTP/2
        // frames, which would otherwise meet the peer's delayed ACK (~40 ms stalls).
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        TlsConnector::from(Arc::new(config))
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))
    }

    /// An HTTP/1.1 TLS stream with nothing sent on it yet.
    pub async fn raw(&self, addr: SocketAddr) -> Result<TlsStream, String> {
        self.tls(addr, Protocol::Http1).await
    }

    /// Opens one TLS connection offering only `protocol` in ALPN.
    pub async fn connect(&self, addr: SocketAddr, protocol: Protocol) -> Result<Conn, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        self.connect_on(tcp, protocol).await
    }

    /// [`Client::connect`] on a TCP connection the test made itself (from a chosen
    /// source address, say).
    pub async fn connect_on(&self, tcp: TcpStream, protocol: Protocol) -> Result<Conn, String> {
        let tls = self.tls_on(tcp, protocol).await?;
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

    /// A review in flight: half its body is sent, the rest once `rest` completes.
    pub async fn review_held_half_way(
        mut self,
        review: &Value,
        rest: impl Future<Output = ()>,
    ) -> Result<Reply, String> {
        let review = serde_json::to_vec(review).expect("json");
        let (tx, request) = unfinished_post(review.len());
        let send = tokio::spawn(async move { self.send(request).await });
        let (head, tail) = review.split_at(review.len() / 2);
        tx.send(Bytes::copy_from_slice(head)).await.expect("send");
        rest.await;
        tx.send(Bytes::copy_from_slice(tail)).await.expect("send");
        drop(tx); // the end of the body (HTTP/2 END_STREAM)
        send.await.expect("join")
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

/// A POST declaring a `declared`-byte body that only arrives as the test sends it on the
/// returned sender (none at all if it sends nothing; keep the sender alive meanwhile).
pub fn unfinished_post(declared: usize) -> (mpsc::Sender<Bytes>, Request<ReqBody>) {
    let (tx, body) = ChannelBody::pair();
    let mut request = post("application/json", body);
    request
        .headers_mut()
        .insert("content-length", declared.into());
    (tx, request)
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
