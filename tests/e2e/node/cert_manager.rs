//! `overlays/cert-manager` on the node (issue 24, point 1), where it can be checked
//! without cert-manager: see the test's documentation, and docs/e2e.md ("What the install
//! tests cannot show") for what is left.

use std::process::Command;

use serde_json::{Value, json};

use super::install::{held, install_reviews};
use crate::support::e2e::*;

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
