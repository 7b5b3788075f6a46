//! Installed as the docs say, on the node (issue 24, point 1): the webhook's image made
//! with the Dockerfile's final stage, `kubectl apply -k` of the self-managed overlay with
//! certificates from `ci-pod-webhook certs` and only the image and the trusted peers set
//! by "your kustomization" (docs/deploy.md); both replicas Ready; the API server calls
//! them through Service `ci-pod-webhook` over HTTP/1.1 and job pods come out patched;
//! `doctor --install` all ✔. Also the figures of BENCHMARKS.md ("Installed on a node"):
//! pod start to Ready, and the API server's webhook latency through the Service
//! (HTTP/1.1) and by a loopback `url` (HTTP/2).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::default_policy;
use crate::support::e2e::*;

/// The image configuration a Dockerfile's final stage gives: from its `FROM` on, the
/// `USER`, `EXPOSE` and exec-form `ENTRYPOINT` lines, and the base image's name.
fn final_stage(dockerfile: &str) -> BTreeMap<&'static str, Value> {
    // Continuation lines joined, comments dropped.
    let text = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM line");
    let mut stage = BTreeMap::new();
    let base = lines[from].split_whitespace().nth(1).expect("FROM's image");
    stage.insert("base", json!(base));
    for line in &lines[from + 1..] {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instruction {
            "USER" => {
                stage.insert("User", json!(rest.trim()));
            }
            "EXPOSE" => {
                let ports: serde_json::Map<String, Value> = rest
                    .split_whitespace()
                    .map(|p| {
                        let port = if p.contains('/') {
                            p.to_string()
                        } else {
                            format!("{p}/tcp")
                        };
                        (port, json!({}))
                    })
                    .collect();
                stage.insert("ExposedPorts", Value::Object(ports));
            }
            "ENTRYPOINT" => {
                let exec: Value = serde_json::from_str(rest).expect("ENTRYPOINT in exec form");
                stage.insert("Entrypoint", exec);
            }
            _ => {}
        }
    }
    stage
}

/// The configuration of the one image in an OCI archive (scripts/node/mkimage.py's).
fn image_config(archive: &Path) -> Value {
    let member = |name: &str| -> Value {
        let output = Command::new("tar")
            .arg("-xOf")
            .arg(archive)
            .arg(name)
            .output()
            .expect("run tar");
        assert!(output.status.success(), "{name} in {}", archive.display());
        serde_json::from_slice(&output.stdout).expect("JSON")
    };
    let blob = |digest: &Value| {
        let digest = digest.as_str().expect("a digest");
        format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
    };
    let index = member("index.json");
    let manifest = member(&blob(&index["manifests"][0]["digest"]));
    member(&blob(&manifest["config"]["digest"]))
}

#[test]
fn the_final_stage_reads_as_the_dockerfile_says() {
    let stage = final_stage(
        "FROM a AS b\nUSER 1\nFROM gcr.io/x:nonroot\n# USER 2\nCOPY a b\nUSER 65532:65532\n\
         EXPOSE 8443 8080/udp\nENTRYPOINT [\"/x\", \\\n  \"serve\"]\n",
    );
    assert_eq!(stage["base"], "gcr.io/x:nonroot");
    assert_eq!(stage["User"], "65532:65532");
    assert_eq!(
        stage["ExposedPorts"],
        json!({"8443/tcp": {}, "8080/udp": {}})
    );
    assert_eq!(stage["Entrypoint"], json!(["/x", "serve"]));
}

#[tokio::test]
#[ignore = "e2e on a real node: needs root, KUBEBUILDER_ASSETS with kubelet, kube-controller-manager and kube-proxy, and the packages docs/e2e.md lists"]
async fn the_self_managed_overlay_installs_and_serves_through_its_service() {
    let node = Node::take_turn().await;

    // The image: the Dockerfile's final stage, held to it here so the two cannot drift.
    let archive = node.webhook_image().await;
    let config = image_config(&archive);
    let dockerfile = std::fs::read_to_string(repo_file("Dockerfile")).expect("Dockerfile");
    let stage = final_stage(&dockerfile);
    for key in ["User", "ExposedPorts", "Entrypoint"] {
        assert_eq!(
            config["config"][key], stage[key],
            "{key} of the node's image against the Dockerfile's final stage"
        );
    }
    assert_eq!(
        config["config"]["Cmd"],
        Value::Null,
        "an ENTRYPOINT resets the base's CMD"
    );
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.base.name"], stage["base"],
        "the stand-in stands in for the Dockerfile's base"
    );
    let base = stage["base"].as_str().expect("base");
    assert!(
        base.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "scripts/node/images.sh's stand-in is made for {base}'s contents: update it"
    );
    assert_eq!(
        config["config"]["WorkingDir"], "/home/nonroot",
        "{config:#}"
    );
    let size = std::fs::metadata(&archive).expect("the archive").len();

    node.services().await;
    let (_, fail_opens) = failure_counters(&node.cp);
    let install = node.install().await;
    // The dry-runs of `until_served` sent before the Service routed: failed open.
    let unrouted = failure_counters(&node.cp).1 - fail_opens;
    let apply_to_ready = install.ready - install.applied;
    let served = install.served - install.ready;
    let pods = install.ready_pods();
    assert_eq!(pods.len(), 2, "{}", install.describe());
    for pod in &pods {
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["ready"], true, "{status}");
        assert_eq!(
            status["image"]
                .as_str()
                .map(|i| i.trim_start_matches("docker.io/")),
            Some(WEBHOOK_IMAGE),
            "{status}"
        );
        assert_eq!(pod["spec"]["nodeName"], node.name.as_str());
    }
    // The start of each container to its pod's Ready condition (seconds, as the API
    // server stores them).
    let start_to_ready: Vec<i64> = pods.iter().map(start_to_ready_seconds).collect();

    // Job pods in an opted-in namespace, reviewed through the Service.
    let ns = node.cp.namespace("node-install", &[OPT_IN]).await;
    for (fixture, name) in [
        ("gitlab-runner-17.9-job-pod.json", "runner-17-9"),
        ("gitlab-runner-16.5-job-pod.json", "runner-16-5"),
    ] {
        let stored = ns
            .create_pod(&held(&renamed(&job_pod(fixture), name)))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        let annotations = annotations(&stored);
        assert_eq!(
            annotations.get("ci.skao.int/class"),
            Some(&json!("k8srunner")),
            "{name}: {annotations:?}"
        );
    }
    let reviews = install_reviews(&install, &ns.name);
    assert_eq!(reviews.len(), 2, "{reviews:#?}");
    for review in &reviews {
        assert_eq!(review["outcome"], "mutated", "{review}");
        assert_eq!(review["span"]["http"], "HTTP/1.1", "{review}");
    }
    // The trusted peer set in the kustomization is the address the API server's
    // connections come from.
    let mut trusted = 0.0;
    for pod in &pods {
        let metrics = pod_metrics(pod).await.expect("the webhook pod's /metrics");
        trusted += metric_sum(&metrics, "ci_pod_webhook_trusted_connections", &[]);
    }
    assert!(
        trusted >= 1.0,
        "no trusted connection open: the API server connects from elsewhere than {}",
        api_server_source()
    );

    let (code, checks) = install.doctor();
    let not_ok: Vec<&Value> = checks.iter().filter(|c| c["status"] != "ok").collect();
    assert!(not_ok.is_empty(), "{not_ok:#?}");
    assert_eq!(code, 0);

    // The API server's latency to the webhook through the Service (HTTP/1.1).
    let service = webhook_latency(&node.cp, &ns, 40).await;
    drop(install);

    // … and to a webhook registered by a loopback `url` (HTTP/2), the same binary on
    // the host with the same policy.
    node.webhook("install-loopback", &default_policy(None))
        .await;
    let loopback_ns = node
        .namespace("node-install-loopback", "install-loopback", &[])
        .await;
    let loopback = webhook_latency(&node.cp, &loopback_ns, 40).await;

    eprintln!(
        "figures: image {size} bytes (uncompressed archive); apply to both Ready {apply_to_ready:.1?}, then \
         to the first review through the Service {served:.1?} ({unrouted} dry-runs failed open before); \
         container start to Ready {start_to_ready:?} s; API server webhook latency, mean of 40 \
         dry-run creates: through the Service (HTTP/1.1) {:.2} ms, loopback url (HTTP/2) {:.2} ms",
        service * 1000.0,
        loopback * 1000.0
    );
}

/// A job pod held by a scheduling gate: stored, never run (the node's 2 CPUs would not
/// run many job pods, and admission is what these tests look at).
pub fn held(pod: &Value) -> Value {
    let mut pod = pod.clone();
    pod["spec"]["schedulingGates"] = json!([{"name": "e2e.ci.skao.int/hold"}]);
    pod
}

/// Seconds from the webhook container's start to its pod's Ready condition.
fn start_to_ready_seconds(pod: &Value) -> i64 {
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().expect("a timestamp"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("RFC 3339")
    };
    let started = parse(&pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]);
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| parse(&c["lastTransitionTime"]))
        .expect("a Ready condition");
    (ready - started).whole_seconds()
}

/// The review log lines of the installed pods about pods in `namespace`.
pub fn install_reviews(install: &Installed<'_>, namespace: &str) -> Vec<Value> {
    let mut reviews = Vec::new();
    for pod in install.pods() {
        let name = pod["metadata"]["name"].as_str().expect("name");
        let output = install
            .cp()
            .kubectl(&["-n", WEBHOOK_NAMESPACE, "logs", name], None);
        reviews.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|l| l["message"] == "review" && l["span"]["namespace"] == namespace),
        );
    }
    reviews
}

/// The mean of the API server's `apiserver_admission_webhook_admission_duration_seconds`
/// for the job-pod entry over `count` dry-run creates of a job pod in `ns` (seconds);
/// panics unless each was reviewed once.
async fn webhook_latency(cp: &ControlPlane, ns: &TestNamespace<'_>, count: u32) -> f64 {
    let labels = [
        r#"name="pods.ci-pod-webhook.ci.skao.int""#,
        r#"type="admit""#,
    ];
    let series = "apiserver_admission_webhook_admission_duration_seconds";
    let before = apiserver_metrics(cp);
    let pod = job_pod("gitlab-runner-17.9-job-pod.json");
    for _ in 0..count {
        let stored = ns.dry_run_pod(&pod).await.expect("dry-run create");
        assert!(annotations(&stored).contains_key("ci.skao.int/class"));
    }
    let after = apiserver_metrics(cp);
    let delta = |name: &str| metric_sum(&after, name, &labels) - metric_sum(&before, name, &labels);
    let calls = delta(&format!("{series}_count"));
    assert_eq!(calls, f64::from(count), "one call per create");
    delta(&format!("{series}_sum")) / calls
}
