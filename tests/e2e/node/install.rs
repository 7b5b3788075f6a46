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

    let install = node.install().await;
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
         to the first review through the Service {served:.1?}; \
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

/// `overlays/cert-manager`'s shape, checked where it can be without cert-manager (its
/// CRDs and controllers are not here): rendered, its Issuer → CA Certificate → Issuer →
/// serving Certificate chain, the serving Secret's name the Deployment mounts, the CA
/// injection annotation on the webhook configuration with no caBundle of its own. Then
/// what cert-manager and its CA injector would do, done by hand from the rendered
/// objects: a P-256 PKCS#8 key and a certificate with exactly the Certificate's
/// `dnsNames` and usages, signed by a CA, in a `kubernetes.io/tls` Secret with `ca.crt`;
/// that CA in every entry's caBundle. The rest of the overlay applied unchanged (only
/// the image and trusted peers set): both replicas Ready, and the API server's call
/// through the Service verifies the certificate cert-manager's shape gives.
#[tokio::test]
#[ignore = "e2e on a real node: needs root, KUBEBUILDER_ASSETS with kubelet, kube-controller-manager and kube-proxy, and the packages docs/e2e.md lists"]
async fn the_cert_manager_overlay_serves_once_its_certificate_and_ca_bundle_are_filled_in() {
    let node = Node::take_turn().await;
    node.services().await;
    node.webhook_image().await;
    let dir = node.state.join("install-cert-manager");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("deploy")).expect("mkdir");
    let deploy = dir.join("deploy");
    let (image, tag) = WEBHOOK_IMAGE.rsplit_once(':').expect("name:tag");
    // Kustomize takes relative paths only: a copy of manifests/ beside the kustomization.
    run(Command::new("cp")
        .arg("-r")
        .arg(repo_file("manifests"))
        .arg(dir.join("manifests")));
    std::fs::write(
        deploy.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - ../manifests/overlays/cert-manager\nimages:\n  - name: ci-pod-webhook\n    \
             newName: {image}\n    newTag: \"{tag}\"\n"
        ),
    )
    .expect("write the kustomization");
    let deploy_text = deploy.display().to_string();
    let rendered = node.cp.kubectl(&["kustomize", &deploy_text], None);
    assert!(
        rendered.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let objects: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&rendered.stdout)).expect("YAML");
    let find = |kind: &str, name: &str| -> &Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the rendered overlay"))
    };
    let of_kind =
        |kind: &str| -> Vec<&Value> { objects.iter().filter(|o| o["kind"] == kind).collect() };

    // The chain: self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate.
    let configuration = &of_kind("MutatingWebhookConfiguration")[0];
    let inject = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        .as_str()
        .expect("the CA injection annotation");
    let (namespace, serving_name) = inject.split_once('/').expect("<namespace>/<Certificate>");
    let serving = find("Certificate", serving_name);
    assert_eq!(serving["metadata"]["namespace"], namespace);
    let ca_issuer = find(
        "Issuer",
        serving["spec"]["issuerRef"]["name"]
            .as_str()
            .expect("issuer"),
    );
    let ca_secret = &ca_issuer["spec"]["ca"]["secretName"];
    let ca_certificate = of_kind("Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"] == *ca_secret)
        .expect("a Certificate writes the CA Issuer's Secret");
    assert_eq!(ca_certificate["spec"]["isCA"], true);
    let root = find(
        "Issuer",
        ca_certificate["spec"]["issuerRef"]["name"]
            .as_str()
            .expect("issuer"),
    );
    assert!(root["spec"]["selfSigned"].is_object(), "{root}");
    // The serving Secret is the one the Deployment mounts.
    let deployment = find("Deployment", "ci-pod-webhook");
    let mounted = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("the tls volume")["secret"]["secretName"]
        .clone();
    assert_eq!(serving["spec"]["secretName"], mounted);
    // No caBundle of its own: the injector fills it in.
    let entries = configuration["webhooks"].as_array().expect("webhooks");
    for entry in entries {
        assert!(entry["clientConfig"]["caBundle"].is_null(), "{entry}");
    }

    // What cert-manager would write: the Secret, from the Certificate's spec.
    let dns_names: Vec<String> = serving["spec"]["dnsNames"]
        .as_array()
        .expect("dnsNames")
        .iter()
        .map(|n| n.as_str().expect("a name").to_string())
        .collect();
    assert_eq!(serving["spec"]["privateKey"]["algorithm"], "ECDSA");
    assert_eq!(serving["spec"]["privateKey"]["size"], 256);
    assert_eq!(serving["spec"]["privateKey"]["encoding"], "PKCS8");
    assert_eq!(
        serving["spec"]["usages"],
        json!(["server auth", "digital signature"])
    );
    let (ca_pem, tls_pem, key_pem) = issue(&dns_names);
    use base64::Engine as _;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": mounted, "namespace": namespace},
        "data": {"tls.crt": b64(&tls_pem), "tls.key": b64(&key_pem), "ca.crt": b64(&ca_pem)},
    });
    // … and what the CA injector would: the Secret's ca.crt in every entry's caBundle.
    let mut items: Vec<Value> = objects
        .iter()
        .filter(|o| {
            !o["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("cert-manager.io/"))
        })
        .cloned()
        .collect();
    for item in &mut items {
        if item["kind"] == "MutatingWebhookConfiguration" {
            for entry in item["webhooks"].as_array_mut().expect("webhooks") {
                entry["clientConfig"]["caBundle"] = json!(b64(&ca_pem));
            }
        }
    }
    items.push(secret);
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let installed = Installed {
        node: &node,
        manifests: dir.clone(),
        deploy,
        applied: std::time::Instant::now(),
        ready: std::time::Instant::now(),
        served: std::time::Instant::now(),
    };
    let output = node
        .cp
        .kubectl(&["apply", "-f", "-"], Some(list.as_bytes()));
    assert!(
        output.status.success(),
        "apply the rendered overlay: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    installed.rollout_status();
    assert_eq!(installed.ready_pods().len(), 2, "{}", installed.describe());
    installed.until_served().await;

    let ns = node
        .cp
        .namespace("node-install-cert-manager", &[OPT_IN])
        .await;
    let stored = ns
        .create_pod(&held(&job_pod("gitlab-runner-17.9-job-pod.json")))
        .await
        .expect("create a job pod");
    assert_eq!(
        annotations(&stored).get("ci.skao.int/class"),
        Some(&json!("k8srunner")),
        "the API server reached the webhook through the Service with cert-manager's shape"
    );
    let reviews = install_reviews(&installed, &ns.name);
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    assert_eq!(reviews[0]["span"]["http"], "HTTP/1.1");
}

/// A CA and a serving certificate as cert-manager's CA issuer makes them for a
/// Certificate with `dns_names`, usages server auth and digital signature, and an ECDSA
/// P-256 key in PKCS#8: the CA's, the certificate's and the key's PEM.
fn issue(dns_names: &[String]) -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "ci-pod-webhook CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(dns_names.to_vec()).expect("params");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}
