//! TLS for the webhook port: rustls with the ring provider, TLS 1.2 and 1.3 only, ALPN
//! `h2` and `http/1.1`, optionally client certificates signed by `--client-ca`.
//!
//! The serving certificate lives in a [`CertStore`] that rustls asks on every handshake,
//! so a reloaded certificate is used by the next connection without rebuilding the
//! config; connections already open keep the one they were made with. The `--client-ca`
//! verifier is replaced the same way ([`ClientCaStore`]).
//!
//! Sessions are not resumable (no session cache, no tickets): a resumed handshake sends
//! no certificate, so a client holding a session made before a rotation would go on
//! using the replaced certificate on new connections, and dropping the cache at each
//! rotation still lets a handshake that straddles the swap store an old session in the
//! new cache (seen under load in tests/integration/under_load.rs). The API server's client does not
//! resume sessions anyway (Go's default), and keep-alive makes new connections rare.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: String },
    #[error("{path}: not a PEM certificate chain: {message}")]
    BadCertificate { path: String, message: String },
    #[error("{path}: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {message}")]
    BadKey { path: String, message: String },
    #[error("the key in {key} does not fit the certificate in {cert}: {message}")]
    Mismatch {
        cert: String,
        key: String,
        message: String,
    },
    #[error("client CA {path}: {message}")]
    ClientCa { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The ring provider, the one rustls is built with here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain and its PEM private key into a [`CertifiedKey`],
/// refusing a key that does not belong to the chain's first certificate.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_name = cert_path.display().to_string();
    let key_name = key_path.display().to_string();
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_name.clone(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_name });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_name.clone(),
        message: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Mismatch {
        cert: cert_name,
        key: key_name,
        message: e.to_string(),
    })
}

/// The certificate served to new connections; swapped on reload.
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(initial: CertifiedKey) -> Self {
        CertStore {
            current: ArcSwap::from_pointee(initial),
        }
    }

    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls server configuration for the webhook port.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    certs: Arc<CertStore>,
    client_ca: Option<Arc<ClientCaStore>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(store) => builder.with_client_cert_verifier(store),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The `--client-ca` verifier in force, asked on every handshake and replaced when the
/// CA file changes (as [`CertStore`] is for the serving certificate).
///
/// It sends no CA names in its certificate request: rustls wants them borrowed from the
/// verifier for as long as it lives, which a replaceable one cannot offer. Hints only
/// help a client choose among several certificates (with none, Go's client sends its
/// one, as the API server has); the verification itself is the same.
pub struct ClientCaStore {
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
}

impl ClientCaStore {
    pub fn new(verifier: Arc<dyn ClientCertVerifier>) -> ClientCaStore {
        ClientCaStore {
            current: ArcSwap::from_pointee(verifier),
        }
    }

    pub fn replace(&self, verifier: Arc<dyn ClientCertVerifier>) {
        self.current.store(Arc::new(verifier));
    }
}

impl fmt::Debug for ClientCaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCaStore").finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ClientCaStore {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

/// Accepts only clients presenting a certificate that chains to a CA in `pem`, the
/// contents of the file at `path`.
pub fn client_verifier(
    pem: &[u8],
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let error = |message: String| TlsError::ClientCa {
        path: path.display().to_string(),
        message,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| error(e.to_string()))?;
        roots.add(cert).map_err(|e| error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(error("no PEM certificate found".into()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| error(e.to_string()))
}
