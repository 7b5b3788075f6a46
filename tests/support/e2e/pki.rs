//! Certificates and keys for one control plane, and the kubeconfig files that use them.
//!
//! One CA signs the API server's serving certificate and the admin's client certificate
//! (`O=system:masters`); the API server trusts client certificates from it. The
//! service-account tokens are signed with a separate P-256 key.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The files the components read, all under `dir/pki`.
pub struct Pki {
    pub ca_pem: String,
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_public: PathBuf,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// The CA, to sign more client certificates (the kubelet's).
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).expect("mkdir pki");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write pki file");
            path
        };

        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca = CertificateParams::new(Vec::new()).expect("ca params");
        ca.distinguished_name
            .push(DnType::CommonName, "kube-e2e CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca, ca_key);

        let serving_key = KeyPair::generate().expect("serving key");
        let mut serving = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default.svc".to_string(),
        ])
        .expect("serving params");
        serving
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving
            .signed_by(&serving_key, &issuer)
            .expect("serving cert");

        let admin_key = KeyPair::generate().expect("admin key");
        let mut admin = CertificateParams::new(Vec::new()).expect("admin params");
        admin
            .distinguished_name
            .push(DnType::CommonName, "e2e-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer).expect("admin cert");

        let sa_key = KeyPair::generate().expect("service-account key");

        Pki {
            ca_pem: ca_cert.pem(),
            ca_cert: write("ca.crt", &ca_cert.pem()),
            serving_cert: write("apiserver.crt", &serving_cert.pem()),
            serving_key: write("apiserver.key", &serving_key.serialize_pem()),
            sa_key: write("sa.key", &sa_key.serialize_pem()),
            sa_public: write("sa.pub", &sa_key.public_key_pem()),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
            issuer,
        }
    }

    /// A client certificate and its key (PEM) for `common_name` in `organization`, signed
    /// by the CA: the API server takes them as that user in that group.
    pub fn client_cert(&self, common_name: &str, organization: &str) -> (String, String) {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::new()).expect("client params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        (cert.pem(), key.serialize_pem())
    }
}

/// How a kubeconfig's user authenticates.
pub enum Credentials<'a> {
    ClientCert { cert_pem: &'a str, key_pem: &'a str },
    Token(&'a str),
}

/// A kubeconfig with one cluster, user and context, as kubectl and kube read it.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &Credentials<'_>) -> String {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let user = match user {
        Credentials::ClientCert { cert_pem, key_pem } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert_pem),
            b64(key_pem)
        ),
        Credentials::Token(token) => format!("    token: {token}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    \
         user: e2e\ncurrent-context: e2e\nusers:\n- name: e2e\n  user:\n{user}",
        b64(ca_pem)
    )
}

/// A `kube::Client` for a kubeconfig file, in the current Tokio runtime.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("read {}: {e}", kubeconfig.display()));
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kubeconfig to client config");
    kube::Client::try_from(config).expect("kube client")
}
