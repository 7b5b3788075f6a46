//! TLS posture, checked from outside with `openssl s_client` (OpenSSL 3) against the
//! running server: TLS 1.0 and 1.1 refused by the server (the client is allowed to try
//! them), TLS 1.2 and 1.3 accepted, and every cipher suite OpenSSL knows tried one by
//! one: only ECDHE with AES-GCM or ChaCha20-Poly1305 is accepted (no CBC, no RSA key
//! exchange, no DHE, no CCM), with an ECDSA and with an RSA certificate. Also: the
//! client-CA mode refuses a client without a certificate, and private keys are written
//! with mode 0600.
//!
//! Needs `openssl` on the PATH (.ci/run installs it when it is missing).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::*;

/// What one `openssl s_client` attempt got.
struct Attempt {
    /// The negotiated cipher, if the handshake completed.
    cipher: Option<String>,
    output: String,
}

fn s_client(addr: SocketAddr, ca: &Path, args: &[&str]) -> Attempt {
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .arg("-CAfile")
        .arg(ca)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client runs (install openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let cipher = text
        .lines()
        .find_map(|l| {
            l.split_once(", Cipher is ")
                .map(|(_, c)| c.trim().to_string())
        })
        .filter(|c| c != "(NONE)");
    Attempt {
        cipher,
        output: text,
    }
}

/// Every cipher suite name OpenSSL knows for TLS 1.2 and below (the server is asked
/// for each over TLS 1.2), at security level 0 so that none is left out.
fn tls12_suites() -> Vec<String> {
    let output = Command::new("openssl")
        .args(["ciphers", "-v", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"])
        .output()
        .expect("openssl ciphers");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.contains("TLSv1.3"))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

const TLS13_SUITES: [&str; 5] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
];

/// An RSA 2048 certificate for localhost, made by openssl (rcgen with ring cannot
/// make RSA keys).
fn rsa_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("rsa.crt"), dir.join("rsa.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl req");
    assert!(status.success());
    (cert, key)
}

/// Runs every check against a server serving `cert` (trusted through `ca`); returns
/// the accepted TLS 1.2 and TLS 1.3 suites.
async fn posture(addr: SocketAddr, ca: PathBuf) -> (BTreeSet<String>, BTreeSet<String>) {
    tokio::task::spawn_blocking(move || {
        // The client may offer old versions (security level 0); the server refuses them.
        for old in ["-tls1", "-tls1_1"] {
            let attempt = s_client(addr, &ca, &[old, "-cipher", "ALL:@SECLEVEL=0"]);
            assert!(
                attempt.cipher.is_none(),
                "{old} accepted:\n{}",
                attempt.output
            );
            assert!(
                attempt.output.contains("alert handshake failure")
                    || attempt.output.contains("alert protocol version"),
                "{old}: not refused by the server:\n{}",
                attempt.output
            );
        }
        for (version, protocol) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
            let attempt = s_client(addr, &ca, &[version]);
            assert!(
                attempt.cipher.is_some(),
                "{version} refused:\n{}",
                attempt.output
            );
            assert!(
                attempt.output.contains(&format!("Protocol  : {protocol}"))
                    || attempt.output.contains(&format!("New, {protocol}"))
            );
            assert!(
                attempt.output.contains("Verify return code: 0 (ok)"),
                "{}",
                attempt.output
            );
        }
        let tls12: BTreeSet<String> = tls12_suites()
            .into_iter()
            .filter(|suite| {
                let cipher = format!("{suite}:@SECLEVEL=0");
                s_client(addr, &ca, &["-tls1_2", "-cipher", &cipher])
                    .cipher
                    .as_deref()
                    == Some(suite.as_str())
            })
            .collect();
        let tls13: BTreeSet<String> = TLS13_SUITES
            .iter()
            .filter(|suite| {
                s_client(addr, &ca, &["-tls1_3", "-ciphersuites", suite])
                    .cipher
                    .as_deref()
                    == Some(**suite)
            })
            .map(|s| s.to_string())
            .collect();
        (tls12, tls13)
    })
    .await
    .expect("openssl checks")
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

const MODERN_TLS13: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_1_2_and_1_3_with_ecdhe_and_aead_suites_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tried = tls12_suites().len();
    assert!(tried > 30, "openssl knows only {tried} TLS 1.2 suites");

    // ECDSA P-256, as `certs` and the development certificate make.
    let (server, _) = Running::with(dir.path(), |_| {}).await;
    let (tls12, tls13) = posture(server.webhook, dir.path().join("ca.crt")).await;
    eprintln!(
        "ECDSA certificate: {tried} TLS 1.2 suites tried, accepted {tls12:?}; TLS 1.3 accepted {tls13:?}"
    );
    assert_eq!(
        tls12,
        set(&[
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ])
    );
    assert_eq!(tls13, set(&MODERN_TLS13));

    // RSA, as an operator's own CA may issue.
    let (cert, key) = rsa_certificate(dir.path());
    let server = Running::start(settings(&cert, &key)).await;
    let (tls12, tls13) = posture(server.webhook, cert).await;
    eprintln!("RSA certificate: accepted {tls12:?}; TLS 1.3 accepted {tls13:?}");
    assert_eq!(
        tls12,
        set(&[
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-RSA-CHACHA20-POLY1305",
        ])
    );
    assert_eq!(tls13, set(&MODERN_TLS13));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_mode_refuses_openssl_without_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Any CA will do (here the server's own, `ca.crt`): the client presents no certificate.
    let (server, _) = Running::with_certs(dir.path(), |s| {
        s.client_ca = Some(dir.path().join("ca.crt"))
    })
    .await;
    let addr = server.webhook;
    let ca = dir.path().join("ca.crt");
    let outputs = tokio::task::spawn_blocking(move || {
        ["-tls1_2", "-tls1_3"].map(|version| {
            // s_client ends the handshake before the server's verdict in TLS 1.3: send a
            // request so that the refusal (an alert) is read.
            let output = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "printf 'GET /livez HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n' | openssl s_client -connect {addr} -servername localhost -CAfile {} {version} -ign_eof",
                    ca.display()
                ))
                .output()
                .expect("openssl");
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
        })
    })
    .await
    .expect("openssl");
    for output in outputs {
        assert!(
            output.contains("alert certificate required")
                || output.contains("alert handshake failure"),
            "{output}"
        );
        assert!(
            !output.contains("HTTP/1.1"),
            "answered without a certificate:\n{output}"
        );
    }
}

#[test]
fn private_keys_are_written_owner_only_even_over_looser_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("certs");
    let certs = |force: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"));
        command
            .args(["certs", "--service", "hook", "--namespace", "ci", "--out"])
            .arg(&out);
        if force {
            command.arg("--force");
        }
        let status = command.stdout(Stdio::null()).status().expect("run");
        assert!(status.success());
    };
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    certs(false);
    for key in ["ca.key", "tls.key"] {
        assert_eq!(mode(&out.join(key)), 0o600, "{key}");
        // Someone loosens them; --force writes new keys, owner-only again.
        std::fs::set_permissions(out.join(key), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    certs(true);
    for key in ["ca.key", "tls.key"] {
        assert_eq!(mode(&out.join(key)), 0o600, "{key} after --force");
    }
    // The development certificate `serve` makes: key 0600 in a 0700 directory.
    let dev = dir.path().join("dev");
    ci_pod_webhook::certs::write_dev_certs(&dev).expect("dev certs");
    assert_eq!(mode(&dev), 0o700);
    assert_eq!(mode(&dev.join("tls.key")), 0o600);
    assert_eq!(mode(&dev.join("tls.crt")), 0o644);
}
