use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use time::Duration;

use super::*;
use crate::certs;
use crate::doctor::report::Status;

const HOST: &str = "ci-pod-webhook.ci-pod-webhook.svc";

fn host() -> Vec<String> {
    vec![HOST.to_string()]
}

fn secret(tls_crt: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("ci-pod-webhook-tls".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "tls.crt".to_string(),
            ByteString(tls_crt.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

fn generated(names: &[String], days: u32) -> certs::Generated {
    certs::generate("ci-pod-webhook", names, days).expect("certificates")
}

fn run(secret: &Secret, bundle: &str, now: OffsetDateTime) -> Vec<(Status, String)> {
    certificate(
        "ci-pod-webhook/ci-pod-webhook-tls",
        Ok(Some(secret)),
        Some(bundle.as_bytes()),
        &host(),
        now,
    )
    .into_iter()
    .map(|c| (c.status, c.message))
    .collect()
}

#[test]
fn a_certificate_from_the_certs_command_passes() {
    let g = generated(
        &certs::service_names("ci-pod-webhook", "ci-pod-webhook"),
        365,
    );
    let checks = run(&secret(&g.tls_cert), &g.ca_cert, OffsetDateTime::now_utc());
    assert_eq!(
        checks[0],
        (
            Status::Ok,
            "caBundle verifies the serving certificate".into()
        )
    );
    assert_eq!(
        checks[1],
        (Status::Ok, format!("certificate names cover {HOST}"))
    );
    assert_eq!(checks[2].0, Status::Ok, "{checks:?}");
    assert!(
        checks[2].1.starts_with("serving certificate valid for 36"),
        "{checks:?}"
    );
}

#[test]
fn names_that_miss_the_service_fail_with_the_names_found() {
    let g = generated(&["localhost".into(), "127.0.0.1".into()], 365);
    let checks = run(&secret(&g.tls_cert), &g.ca_cert, OffsetDateTime::now_utc());
    assert_eq!(checks[0].0, Status::Ok);
    assert_eq!(checks[1].0, Status::Failure);
    assert!(
        checks[1]
            .1
            .starts_with("certificate names (localhost, 127.0.0.1) "),
        "{checks:?}"
    );
    assert!(
        checks[1].1.ends_with(&format!("do not cover {HOST}")),
        "{checks:?}"
    );
}

#[test]
fn a_ca_bundle_from_another_ca_fails() {
    let names = certs::service_names("ci-pod-webhook", "ci-pod-webhook");
    let serving = generated(&names, 365);
    let other = generated(&names, 365);
    let checks = run(
        &secret(&serving.tls_cert),
        &other.ca_cert,
        OffsetDateTime::now_utc(),
    );
    assert_eq!(checks[0].0, Status::Failure);
    assert!(
        checks[0]
            .1
            .starts_with("caBundle does not verify the serving certificate"),
        "{checks:?}"
    );
    let garbage = run(
        &secret(&serving.tls_cert),
        "not pem",
        OffsetDateTime::now_utc(),
    );
    assert_eq!(
        garbage[0],
        (
            Status::Failure,
            "caBundle holds no usable CA certificate".into()
        )
    );
}

#[test]
fn expiry_warns_under_thirty_days_and_fails_once_passed() {
    let g = generated(
        &certs::service_names("ci-pod-webhook", "ci-pod-webhook"),
        40,
    );
    let s = secret(&g.tls_cert);
    let now = OffsetDateTime::now_utc();
    assert_eq!(run(&s, &g.ca_cert, now)[2].0, Status::Ok);
    let soon = run(&s, &g.ca_cert, now + Duration::days(20));
    assert_eq!(soon[2].0, Status::Warning);
    assert!(
        soon[2]
            .1
            .starts_with("serving certificate expires in 19 day(s)")
            || soon[2]
                .1
                .starts_with("serving certificate expires in 20 day(s)"),
        "{soon:?}"
    );
    let late = run(&s, &g.ca_cert, now + Duration::days(41));
    assert_eq!(late[2].0, Status::Failure);
    assert!(late[2].1.starts_with("serving certificate expired on"));
    // The chain and names are judged apart from the date.
    assert_eq!(late[0].0, Status::Ok);
}

#[test]
fn a_missing_or_unreadable_secret_fails() {
    let now = OffsetDateTime::now_utc();
    let missing = certificate("ns/tls", Ok(None), None, &host(), now);
    assert_eq!(missing[0].message, "Secret ns/tls not found");
    let forbidden = certificate(
        "ns/tls",
        Err("secrets \"tls\" is forbidden"),
        None,
        &host(),
        now,
    );
    assert!(
        forbidden[0]
            .message
            .starts_with("cannot read Secret ns/tls")
    );
    let empty = certificate("ns/tls", Ok(Some(&secret("junk"))), None, &host(), now);
    assert_eq!(empty[0].status, Status::Failure);
}

#[test]
fn each_host_the_api_server_dials_is_checked_ip_addresses_too() {
    let mut names = certs::service_names("ci-pod-webhook", "ci-pod-webhook");
    names.push("10.0.0.7".to_string());
    let pair = generated(&names, 90);
    let hosts = [HOST.to_string(), "10.0.0.7".into(), "192.168.49.1".into()];
    let checks: Vec<(Status, String)> = certificate(
        "ns/tls",
        Ok(Some(&secret(&pair.tls_cert))),
        Some(pair.ca_cert.as_bytes()),
        &hosts,
        OffsetDateTime::now_utc(),
    )
    .into_iter()
    .map(|c| (c.status, c.message))
    .collect();
    assert_eq!(
        checks[0],
        (
            Status::Ok,
            "caBundle verifies the serving certificate".into()
        )
    );
    assert_eq!(
        checks[1],
        (Status::Ok, format!("certificate names cover {HOST}"))
    );
    assert_eq!(
        checks[2],
        (Status::Ok, "certificate names cover 10.0.0.7".into())
    );
    assert_eq!(checks[3].0, Status::Failure);
    assert!(
        checks[3].1.ends_with("10.0.0.7) do not cover 192.168.49.1"),
        "IP names read as addresses: {}",
        checks[3].1
    );
}
