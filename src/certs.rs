//! Certificates the webhook makes for itself: a CA and a serving certificate signed by it.
//!
//! Two uses: `serve` without TLS flags makes a development pair for `localhost`, and the
//! `certs` command makes the pair for the self-managed cluster setup, with the Service's
//! DNS names as SANs (the API server checks SANs, never the CN) and the CA as a
//! single-line base64 `caBundle` for the MutatingWebhookConfiguration.
//!
//! `certs` never replaces files already in `--out` without `--force`: a new CA and a new
//! certificate applied together break the webhook until every replica has reloaded, so
//! a rotation writes to a new directory and follows the ordered steps in certs/README.md.
//! `--ip` and `--dns` add names, for an API server that reaches the webhook elsewhere than
//! at its Service (a kind or minikube cluster calling `serve` on the host);
//! `--names-from` adds those of the certificate a rotation replaces ([`names_in`]).
//!
//! Keys are ECDSA P-256. Private keys are written 0600, through a temporary file and a
//! rename, so that a reader (or the webhook's own reloader) never sees half a file. A
//! development certificate directory is locked by the `serve` that wrote it.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_BUNDLE: &str = "ca-bundle.b64";

/// Validity of development certificates.
const DEV_DAYS: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} already exists. Replacing the CA and the serving certificate in place breaks the webhook until every replica has loaded the new pair; to rotate, write to a new directory (for example --out certs.next) and follow the rotation steps in certs/README.md; pass --force to replace them anyway"
    )]
    Exists(PathBuf),
    #[error("--days must be between 1 and 3650, got {0}")]
    Days(u32),
    #[error("cannot read the names of the certificate {path}: {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error(
        "{0} holds the development certificate of another ci-pod-webhook serve that is still running; stop it, or give this one its own --cert-dir"
    )]
    InUse(PathBuf),
}

/// Name of the lock file in a development certificate directory.
const DEV_LOCK: &str = ".lock";

/// Held by a `serve` for as long as it uses its development certificate directory: a
/// second `serve` with the same `--cert-dir` would otherwise replace the certificate
/// under the first one, whose reloader would then serve it with a CA its clients do not
/// know. The lock is the kernel's (`flock`), so it goes with the process, however it ends.
#[derive(Debug)]
pub struct DevCertLock {
    _file: fs::File,
}

/// The serving certificate `certs` makes: for a Service, with extra names.
#[derive(Debug, Clone)]
pub struct ServiceCertificate<'a> {
    pub service: &'a str,
    pub namespace: &'a str,
    /// Validity of both certificates, in days (1 to 3650).
    pub days: u32,
    pub ips: &'a [IpAddr],
    pub dns_names: &'a [String],
}

/// A CA and a serving certificate it signed, PEM-encoded.
#[derive(Debug)]
pub struct Generated {
    pub ca_cert: String,
    pub ca_key: String,
    pub tls_cert: String,
    pub tls_key: String,
}

/// The names a certificate carries (its subjectAltName): DNS names and IP addresses.
/// `certs --names-from` reads them from the certificate a rotation replaces, so the new
/// one keeps the `--ip`/`--dns` names the install was made with.
///
/// # Errors
/// `path` cannot be read, or holds no PEM certificate.
pub fn names_in(path: &Path) -> Result<(Vec<String>, Vec<IpAddr>), CertError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

    let unreadable = |why: String| CertError::Unreadable {
        path: path.to_path_buf(),
        why,
    };
    let pem = fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| unreadable("no PEM certificate in it".into()))?
        .map_err(|e| unreadable(format!("not PEM: {e}")))?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| unreadable(e.to_string()))?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(name) => dns.push((*name).to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => ips.extend(<[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from)),
                    16 => ips.extend(<[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from)),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok((dns, ips))
}

/// The serving certificate's names for `service` in `namespace`.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Generates a CA and a serving certificate for `names` (DNS names or IP addresses).
pub fn generate(common_name: &str, names: &[String], days: u32) -> Result<Generated, CertError> {
    let now = OffsetDateTime::now_utc();
    // An hour back, so that a client whose clock is a little behind still accepts it.
    let not_before = now - Duration::hours(1);
    let not_after = now + Duration::days(i64::from(days));

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, format!("{common_name} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let tls_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name
        .push(DnType::CommonName, common_name.to_string());
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let tls_cert = leaf.signed_by(&tls_key, &issuer)?;

    Ok(Generated {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        tls_cert: tls_cert.pem(),
        tls_key: tls_key.serialize_pem(),
    })
}

/// The `certs` command: writes the five files to `out` (replacing any there only when
/// `force`), returns what it wrote.
pub fn run(
    cert: &ServiceCertificate<'_>,
    out: &Path,
    force: bool,
) -> Result<Vec<PathBuf>, CertError> {
    if !(1..=3650).contains(&cert.days) {
        return Err(CertError::Days(cert.days));
    }
    if !force {
        // Any of them, not only ca.key: the docs advise deleting ca.key once installed,
        // and a re-run must not then swap the CA the cluster trusts without a word.
        let present = [CA_CERT, CA_KEY, TLS_CERT, TLS_KEY, CA_BUNDLE]
            .iter()
            .map(|name| out.join(name))
            .find(|path| path.symlink_metadata().is_ok());
        if let Some(path) = present {
            return Err(CertError::Exists(path));
        }
    }
    let mut names = service_names(cert.service, cert.namespace);
    for name in cert
        .dns_names
        .iter()
        .cloned()
        .chain(cert.ips.iter().map(IpAddr::to_string))
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let generated = generate(&names[2], &names, cert.days)?;
    create_dir(out, 0o755)?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(&generated.ca_cert) + "\n";
    let files = [
        (CA_CERT, generated.ca_cert.as_str(), 0o644),
        (CA_KEY, generated.ca_key.as_str(), 0o600),
        (TLS_CERT, generated.tls_cert.as_str(), 0o644),
        (TLS_KEY, generated.tls_key.as_str(), 0o600),
        (CA_BUNDLE, bundle.as_str(), 0o644),
    ];
    let mut written = Vec::new();
    for (name, contents, mode) in files {
        let path = out.join(name);
        write_file(&path, contents.as_bytes(), mode)?;
        written.push(path);
    }
    Ok(written)
}

/// Development certificates in `dir`, for `localhost` and `127.0.0.1`: `ca.crt`,
/// `tls.crt` and `tls.key`. Made afresh on every start, so they never expire on a
/// developer; the CA key is not kept. The directory stays locked to this process while
/// the returned lock lives; a directory another process holds is left untouched.
pub fn write_dev_certs(dir: &Path) -> Result<DevCertLock, CertError> {
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let generated = generate("ci-pod-webhook development", &names, DEV_DAYS)?;
    // Owner-only: the default directory is under the shared temporary directory, and
    // setting the mode fails unless we own it, so nobody else can have planted it.
    create_dir(dir, 0o700)?;
    let lock = lock_dir(dir)?;
    write_file(&dir.join(CA_CERT), generated.ca_cert.as_bytes(), 0o644)?;
    write_file(&dir.join(TLS_CERT), generated.tls_cert.as_bytes(), 0o644)?;
    write_file(&dir.join(TLS_KEY), generated.tls_key.as_bytes(), 0o600)?;
    Ok(lock)
}

fn lock_dir(dir: &Path) -> Result<DevCertLock, CertError> {
    let path = dir.join(DEV_LOCK);
    let error = |source| CertError::Write {
        path: path.clone(),
        source,
    };
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(error)?;
    match file.try_lock() {
        Ok(()) => Ok(DevCertLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(CertError::InUse(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(error(e)),
    }
}

fn create_dir(dir: &Path, mode: u32) -> Result<(), CertError> {
    let error = |source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(error)?;
    let meta = fs::symlink_metadata(dir).map_err(error)?;
    if !meta.is_dir() {
        return Err(error(std::io::Error::other("not a directory")));
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(error)
}

/// Writes `contents` with exactly `mode` (whatever the umask), atomically.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let error = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover from an interrupted run could have another mode: start afresh.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
        _ => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(error)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(error)?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)?;
    fs::rename(&tmp, path).map_err(error)
}

#[cfg(test)]
mod tests;
