//! The floor: a webhook that answers every pod with one `add` of an annotation, the
//! least an API server can be asked to apply. TLS and HTTP/1.1 or HTTP/2 as ours.
//!
//! On `/ours-shape` it answers with the patch ci-pod-webhook gives the 17.9 fixture
//! instead (computed by the library at start, byte for byte what `serve` sends), so the
//! API server's cost of our patch's shape can be told apart from our server's time.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The one operation: the fixture pods all carry annotations, so the map exists.
const PATCH: &str =
    r#"[{"op":"add","path":"/metadata/annotations/bench.e2e~1minimal","value":"1"}]"#;

#[derive(Deserialize)]
struct Review {
    request: Uid,
}

#[derive(Deserialize)]
struct Uid {
    uid: String,
}

/// A running minimal webhook: its port and the CA of its certificate.
pub struct Minimal {
    pub port: u16,
    pub ca_pem: String,
}

/// Starts the webhook on a free loopback port, on the current runtime.
/// `ours_shape`: the JSONPatch answered on `/ours-shape`.
pub async fn start(ours_shape: String) -> Minimal {
    let shape = base64::engine::general_purpose::STANDARD.encode(ours_shape);
    let one = base64::engine::general_purpose::STANDARD.encode(PATCH);
    let patches = Arc::new((one, shape));
    let names = ["127.0.0.1".to_string()];
    let certs = ci_pod_webhook::certs::generate("bench-minimal", &names, 1).expect("certs");
    let chain = CertificateDer::pem_slice_iter(certs.tls_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(certs.tls_key.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let patches = patches.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    let patches = patches.clone();
                    async move { answer(request, &patches).await }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Minimal {
        port,
        ca_pem: certs.ca_cert,
    }
}

/// `patches`: the one-operation patch and our shape, both base64.
async fn answer(
    request: Request<Incoming>,
    patches: &(String, String),
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let patch = if request.uri().path() == "/ours-shape" {
        &patches.1
    } else {
        &patches.0
    };
    let body = request.into_body().collect().await?.to_bytes();
    let uid = serde_json::from_slice::<Review>(&body)
        .map(|r| r.request.uid)
        .unwrap_or_default();
    let response = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch},
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(response.to_string())))
        .expect("response"))
}
