//! Small things a command-line user meets: output piped into `head` ends quietly, a
//! certificate rotation keeps the names the install needs, and warn mode's warnings say
//! what enforce *would* do.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"));
    command.env_remove("CI_POD_WEBHOOK_POLICY");
    command
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `args` with stdout a pipe nobody reads: its reading end is closed before the
/// command starts, as `head` closes it once it has its lines.
fn into_closed_pipe(args: &[&str], stdin: &[u8]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("wait")
}

#[test]
fn every_command_ends_quietly_with_0_when_its_output_is_cut_off() {
    let list = std::fs::read(fixture("kubectl-get-pods-list.json")).expect("fixture");
    let pod = std::fs::read(fixture("kubectl-get-pod-16.5.json")).expect("fixture");
    let out = tempfile::tempdir().expect("tempdir");
    let certs = out.path().join("certs");
    let certs = certs.to_str().expect("UTF-8");
    let cases: [(&[&str], &[u8]); 6] = [
        (&["default-policy"], b""),
        (&["check-policy"], b""),
        (&["mutate", "--explain", "-"], &list),
        (&["mutate", "-"], &pod),
        (&["certs", "--out", certs], b""),
        (&["--help"], b""),
    ];
    for (args, stdin) in cases {
        let output = into_closed_pipe(args, stdin);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

fn names(tls_crt: &std::path::Path) -> Vec<String> {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(tls_crt)
        .output()
        .expect("openssl (tests/integration/tls_posture.rs needs it too)");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut names: Vec<String> = text
        .lines()
        .skip(1)
        .flat_map(|l| l.split(','))
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names
}

#[test]
fn a_rotated_certificate_keeps_the_names_of_the_one_it_replaces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let installed = dir.path().join("certs");
    let next = dir.path().join("certs.next");
    let output = bin()
        .args([
            "certs",
            "--dns",
            "host.minikube.internal",
            "--ip",
            "192.168.49.1",
        ])
        .arg("--out")
        .arg(&installed)
        .output()
        .expect("certs");
    assert!(output.status.success(), "{output:?}");
    let output = bin()
        .args(["certs", "--out"])
        .arg(&next)
        .arg("--names-from")
        .arg(installed.join("tls.crt"))
        .output()
        .expect("certs");
    assert!(output.status.success(), "{output:?}");
    let kept = names(&next.join("tls.crt"));
    assert_eq!(kept, names(&installed.join("tls.crt")));
    assert!(
        kept.contains(&"IP Address:192.168.49.1".to_string()),
        "{kept:?}"
    );
    assert!(
        kept.contains(&"DNS:host.minikube.internal".to_string()),
        "{kept:?}"
    );
}

/// The warnings of `mutate` in a warn namespace for `pod`.
fn warn_mode_warnings(pod: &Value) -> Vec<String> {
    let mut child = bin()
        .args([
            "mutate",
            "--namespace-labels",
            "ci.skao.int/pod-policy=warn",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pod.to_string().as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{output:?}");
    let response: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    response["response"]["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w.as_str().expect("text").to_string())
        .collect()
}

#[test]
fn warn_mode_says_what_enforce_would_do_not_what_it_did() {
    let mut pod: Value = serde_json::from_slice(
        &std::fs::read(fixture("gitlab-runner-17.9-job-pod.json")).expect("fixture"),
    )
    .expect("JSON");
    // Above the k8srunner ceiling (8): enforce clamps it.
    pod["metadata"]["annotations"]["ci.skao.int/cpu-limit"] = "20".into();
    let build = pod["spec"]["containers"]
        .as_array_mut()
        .and_then(|c| c.iter_mut().find(|c| c["name"] == "build"))
        .expect("build");
    build["env"]
        .as_array_mut()
        .expect("env")
        .push(serde_json::json!({"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}));
    pod["spec"]["nodeSelector"] =
        serde_json::json!({"node-role.skatelescope.org/ci-worker": "false"});
    let warnings = warn_mode_warnings(&pod);
    let clamped = warnings
        .iter()
        .find(|w| w.contains("is above the ceiling"))
        .unwrap_or_else(|| panic!("{warnings:#?}"));
    assert!(clamped.contains("would use 8"), "{clamped}");
    for warning in &warnings {
        for (done, would) in [
            ("; using ", "; would use "),
            (" removed:", " would be removed:"),
            (" replaced by ", " would be replaced by "),
            (" lowered to ", " would be lowered to "),
        ] {
            assert!(
                !warning.contains(done) || warning.contains(would),
                "warn mode changed nothing: {warning}"
            );
        }
    }
    assert!(
        warnings.iter().any(|w| w.contains("would be removed")),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("would be replaced by")),
        "{warnings:#?}"
    );
}
