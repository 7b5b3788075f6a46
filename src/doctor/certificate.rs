//! The serving certificate as the API server sees it: does the webhook configuration's
//! caBundle verify the certificate in the TLS Secret, for each host the API server dials
//! (`<service>.<namespace>.svc` for a `clientConfig.service`, the host of a
//! `clientConfig.url`, which can be an IP address), and how long until it expires? A mismatch here fails
//! open silently under `failurePolicy: Ignore`: pods are created without the policy and
//! only `apiserver_admission_webhook_fail_open_count` moves.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use super::report::Check;

pub const GROUP: &str = "certificate";
/// Under this many days left, the doctor warns.
pub const WARN_DAYS: i64 = 30;
const SILENT: &str = "the API server cannot call the webhook; under failurePolicy Ignore every job pod is created without the policy, silently (only apiserver_admission_webhook_fail_open_count moves)";

/// What the certificate checks need from the serving certificate.
struct Serving {
    der: Vec<CertificateDer<'static>>,
    names: Vec<String>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

fn read_serving(pem: &[u8]) -> Result<Serving, String> {
    let der: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt is not PEM: {e}"))?;
    let first = der.first().ok_or("tls.crt holds no certificate")?;
    let (_, cert) = X509Certificate::from_der(first).map_err(|e| format!("tls.crt: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_string()),
                GeneralName::IPAddress(ip) => names.push(ip_text(ip)),
                _ => {}
            }
        }
    }
    Ok(Serving {
        names,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        der,
    })
}

/// An IP address SAN as people write it (`10.0.0.7`, `fd00::7`).
fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).map_or_else(
            |_| String::new(),
            |b| std::net::Ipv4Addr::from(b).to_string(),
        ),
        16 => <[u8; 16]>::try_from(bytes).map_or_else(
            |_| String::new(),
            |b| std::net::Ipv6Addr::from(b).to_string(),
        ),
        _ => format!("{bytes:?}"),
    }
}

/// Checks the serving certificate in `secret` (`Err`: unreadable, `Ok(None)`: absent)
/// against `ca_bundle` (PEM, from the webhook configuration) for each of `hosts`, at
/// `now`.
pub fn certificate(
    secret_name: &str,
    secret: Result<Option<&Secret>, &str>,
    ca_bundle: Option<&[u8]>,
    hosts: &[String],
    now: OffsetDateTime,
) -> Vec<Check> {
    let secret = match secret {
        Err(error) => {
            return vec![
                Check::failure(GROUP, format!("cannot read Secret {secret_name}: {error}"))
                    .fix("kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md)"),
            ];
        }
        Ok(None) => {
            return vec![
                Check::failure(GROUP, format!("Secret {secret_name} not found"))
                    .hint("the webhook has no serving certificate and cannot start")
                    .fix("cert-manager overlay: kubectl describe certificate -n <namespace>; self-managed: ci-pod-webhook certs, then kubectl apply -k your kustomization"),
            ];
        }
        Ok(Some(s)) => s,
    };
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get("tls.crt"))
        .map(|b| b.0.as_slice());
    let serving = match pem
        .ok_or_else(|| "no tls.crt".to_string())
        .and_then(read_serving)
    {
        Ok(s) => s,
        Err(error) => {
            return vec![Check::failure(
                GROUP,
                format!("Secret {secret_name}: {error}"),
            )];
        }
    };
    let mut checks = Vec::new();
    if let Some(bundle) = ca_bundle {
        checks.extend(verify(bundle, &serving, hosts));
    }
    let days = (serving.not_after - now).whole_days();
    let until = serving.not_after.date();
    checks.push(if serving.not_after <= now {
        Check::failure(GROUP, format!("serving certificate expired on {until}"))
            .hint(SILENT)
            .fix("cert-manager renews it itself (kubectl describe certificate); self-managed: the rotation steps in certs/README.md")
    } else if days < WARN_DAYS {
        Check::warning(GROUP, format!("serving certificate expires in {days} day(s), on {until}"))
            .fix("cert-manager renews it itself (kubectl describe certificate); self-managed: the rotation steps in certs/README.md")
    } else {
        Check::ok(GROUP, format!("serving certificate valid for {days} more days (until {until})"))
    });
    checks
}

/// Verifies the chain and each name as the API server does; the time is fixed inside
/// the validity period so that expiry is reported once, by its own check.
fn verify(bundle: &[u8], serving: &Serving, hosts: &[String]) -> Vec<Check> {
    let fix = "cert-manager: check the MutatingWebhookConfiguration's cert-manager.io/inject-ca-from annotation; self-managed: re-apply your kustomization so caBundle is the ca.crt that signed tls.crt";
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle).flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return vec![
            Check::failure(GROUP, "caBundle holds no usable CA certificate")
                .hint(SILENT)
                .fix(fix),
        ];
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        match WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build() {
            Ok(v) => v,
            Err(e) => return vec![Check::failure(GROUP, format!("caBundle: {e}")).fix(fix)],
        };
    let middle: OffsetDateTime = serving.not_before + (serving.not_after - serving.not_before) / 2;
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(middle.unix_timestamp()).unwrap_or(0),
    ));
    let Some((end_entity, intermediates)) = serving.der.split_first() else {
        return vec![Check::failure(GROUP, "tls.crt holds no certificate")];
    };
    let names = || serving.names.join(", ");
    let mut chain: Option<Check> = None;
    let mut covered = Vec::new();
    for host in hosts {
        let Ok(server_name) = ServerName::try_from(host.to_string()) else {
            covered.push(Check::failure(
                GROUP,
                format!("{host:?} is neither a DNS name nor an IP address"),
            ));
            continue;
        };
        match verifier.verify_server_cert(end_entity, intermediates, &server_name, &[], at) {
            Ok(_) => {
                chain.get_or_insert_with(|| {
                    Check::ok(GROUP, "caBundle verifies the serving certificate")
                });
                covered.push(Check::ok(GROUP, format!("certificate names cover {host}")));
            }
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {
                chain.get_or_insert_with(|| {
                    Check::ok(GROUP, "caBundle verifies the serving certificate")
                });
                covered.push(
                    Check::failure(
                        GROUP,
                        format!("certificate names ({}) do not cover {host}", names()),
                    )
                    .hint(SILENT)
                    .fix(name_fix(host)),
                );
            }
            Err(e) => {
                return vec![
                    Check::failure(
                        GROUP,
                        format!("caBundle does not verify the serving certificate: {e}"),
                    )
                    .hint(SILENT)
                    .fix(fix),
                ];
            }
        }
    }
    chain.into_iter().chain(covered).collect()
}

/// How to get a certificate that names `host`.
fn name_fix(host: &str) -> String {
    if host.ends_with(".svc") {
        format!(
            "make a certificate for the Service: ci-pod-webhook certs --service <service> --namespace <namespace> (it names {host}), or fix the Certificate's dnsNames"
        )
    } else {
        let flag = if host.parse::<std::net::IpAddr>().is_ok() {
            "--ip"
        } else {
            "--dns"
        };
        format!(
            "clientConfig.url dials {host}: make the certificate with ci-pod-webhook certs {flag} {host} (a rotation keeps the names with --names-from the old tls.crt, certs/README.md), or add it to the Certificate"
        )
    }
}

#[cfg(test)]
mod tests;
