//! ci-pod-webhook installed on the node the way docs/deploy.md and
//! manifests/overlays/self-managed/README.md say: certificates from `ci-pod-webhook
//! certs` in the overlay's `certs/`, and "your kustomization" on top of the overlay with
//! only the image reference (the node's locally made image, [`WEBHOOK_IMAGE`]) and the
//! trusted peers (the API server's address, docs/network.md) set, applied with
//! `kubectl apply -k`. The API server calls it through Service `ci-pod-webhook` (kube-proxy
//! routes the ClusterIP), over HTTP/1.1 as it calls every `service` webhook.
//!
//! The installed MutatingWebhookConfiguration selects every opted-in namespace, those of
//! the node's other tests too: [`Installed`] removes it, the Deployment, Service and PDB
//! when dropped, within the test's turn. The namespace, ServiceAccount and RBAC stay: the
//! node's other webhooks authenticate as that ServiceAccount.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use serde_json::Value;

use super::super::{
    ControlPlane, OPT_IN, PATIENCE, TestNamespace, WEBHOOK_NAMESPACE, annotations, job_pod,
    repo_file,
};
use super::{Node, WEBHOOK_IMAGE};

/// The webhook entry of job pods in manifests/base (the API server's metrics' `name`).
pub const JOB_POD_WEBHOOK: &str = "pods.ci-pod-webhook.ci.skao.int";

/// An install on the node, removed when dropped.
pub struct Installed<'n> {
    pub node: &'n Node,
    /// A copy of the repository's `manifests/`, the certificates in its
    /// `overlays/self-managed/certs`.
    pub manifests: PathBuf,
    /// "Your kustomization" (docs/deploy.md): the self-managed overlay, the image, the
    /// trusted peers.
    pub deploy: PathBuf,
    /// When `kubectl apply -k` returned, when both replicas were Ready after it, and
    /// when the API server's calls through the Service first reached one.
    pub applied: Instant,
    pub ready: Instant,
    pub served: Instant,
}

impl Node {
    /// Installs ci-pod-webhook from `manifests/overlays/self-managed` (see the module's
    /// documentation) and waits until `kubectl rollout status` says both replicas are
    /// available.
    pub async fn install(&self) -> Installed<'_> {
        self.services().await;
        self.webhook_image().await;
        let dir = self.state.join("install");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the install directory");
        let manifests = dir.join("manifests");
        super::run(
            Command::new("cp")
                .arg("-r")
                .arg(repo_file("manifests"))
                .arg(&manifests),
        );
        let certs = manifests.join("overlays/self-managed/certs");
        let _ = std::fs::remove_dir_all(&certs);
        std::fs::create_dir_all(&certs).expect("mkdir certs");
        certs_command(&certs, &[]);
        let deploy = dir.join("deploy");
        std::fs::create_dir_all(&deploy).expect("mkdir deploy");
        let (name, tag) = WEBHOOK_IMAGE.rsplit_once(':').expect("name:tag");
        std::fs::write(
            deploy.join("kustomization.yaml"),
            format!(
                r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../manifests/overlays/self-managed
images:
  - name: ci-pod-webhook
    newName: {name}
    newTag: "{tag}"
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: ci-pod-webhook, namespace: ci-pod-webhook}}
      spec:
        template:
          spec:
            containers:
              - name: webhook
                env:
                  - name: CI_POD_WEBHOOK_TRUSTED_PEERS
                    value: "{peer}/32"
"#,
                peer = api_server_source()
            ),
        )
        .expect("write the kustomization");
        let mut installed = Installed {
            node: self,
            manifests,
            deploy,
            applied: Instant::now(),
            ready: Instant::now(),
            served: Instant::now(),
        };
        installed.applied = installed.apply();
        installed.rollout_status();
        installed.ready = Instant::now();
        installed.until_served().await;
        installed.served = Instant::now();
        installed
    }
}

/// The address the webhook sees the API server's connections come from: the API server
/// dials the Service's ClusterIP from the host, and kube-proxy masquerades traffic to a
/// ClusterIP from outside the pod network to the address of the interface it leaves by,
/// the pods' bridge (its gateway, the first address of the pod network).
pub fn api_server_source() -> String {
    let network = super::POD_CIDR.split('/').next().expect("a CIDR");
    let (prefix, _) = network.rsplit_once('.').expect("IPv4");
    format!("{prefix}.1")
}

/// `ci-pod-webhook certs --service ci-pod-webhook --namespace ci-pod-webhook --out DIR`,
/// as certs/README.md runs it, with `extra` arguments.
pub fn certs_command(out: &Path, extra: &[&str]) {
    super::run(
        Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
            .args(["certs", "--service", "ci-pod-webhook"])
            .args(["--namespace", "ci-pod-webhook", "--out"])
            .arg(out)
            .args(extra),
    );
}

impl Installed<'_> {
    pub fn cp(&self) -> &ControlPlane {
        &self.node.cp
    }

    /// The self-managed overlay's `certs/` directory.
    pub fn certs(&self) -> PathBuf {
        self.manifests.join("overlays/self-managed/certs")
    }

    /// `kubectl apply -k` of the kustomization; returns when it did.
    pub fn apply(&self) -> Instant {
        let deploy = self.deploy.display().to_string();
        let output = self.cp().kubectl(&["apply", "-k", &deploy], None);
        assert!(
            output.status.success(),
            "kubectl apply -k {deploy}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Instant::now()
    }

    /// `kubectl rollout status` of the webhook's Deployment, as docs/deploy.md waits.
    pub fn rollout_status(&self) {
        let output = self.cp().kubectl(
            &[
                "-n",
                WEBHOOK_NAMESPACE,
                "rollout",
                "status",
                "deployment/ci-pod-webhook",
                "--timeout=120s",
            ],
            None,
        );
        assert!(
            output.status.success(),
            "rollout status: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.describe()
        );
    }

    /// Waits until the API server's calls through the Service reach a replica: a
    /// dry-run job pod in an opted-in namespace comes back patched. Replicas can be
    /// Ready before the Service routes to them (the EndpointSlice, then kube-proxy's
    /// rules, follow a moment later); under `failurePolicy: Ignore` the job pods of that
    /// moment are admitted unpatched. Returns how long it took.
    pub async fn until_served(&self) -> Duration {
        let name = "e2e-install-probe";
        let exists = Api::<Namespace>::all(self.cp().client().await)
            .get_opt(name)
            .await
            .expect("get the probe namespace")
            .is_some();
        let probe = if exists {
            TestNamespace {
                name: name.to_string(),
                cp: self.cp(),
            }
        } else {
            self.cp().namespace(name, &[OPT_IN]).await
        };
        let pod = job_pod("gitlab-runner-17.9-job-pod.json");
        wait_for("served through the Service", PATIENCE, || async {
            probe
                .dry_run_pod(&pod)
                .await
                .is_ok_and(|stored| annotations(&stored).contains_key("ci.skao.int/class"))
        })
        .await
    }

    /// The webhook's pods as `kubectl get -o json` lists them.
    pub fn pods(&self) -> Vec<Value> {
        let output = self.cp().kubectl(
            &[
                "-n",
                WEBHOOK_NAMESPACE,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/component=webhook",
                "-o",
                "json",
            ],
            None,
        );
        assert!(output.status.success(), "get the webhook's pods");
        let list: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// The webhook's Ready pods that are not being deleted.
    pub fn ready_pods(&self) -> Vec<Value> {
        self.pods()
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && pod_ready(p))
            .collect()
    }

    /// What `kubectl describe` says of the webhook's pods, for failure messages.
    pub fn describe(&self) -> String {
        let output = self
            .cp()
            .kubectl(&["-n", WEBHOOK_NAMESPACE, "describe", "pods"], None);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `doctor --install -o json` as the cluster admin: its exit code and checks.
    pub fn doctor(&self) -> (i32, Vec<Value>) {
        super::super::doctor(self.cp().kubeconfig(), &["--install"])
    }
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kube-e2e: the install's pods:\n{}", self.describe());
            self.node.keep_logs();
        }
        // The configuration first: from then on the API server calls no pod of it.
        let _ = self.cp().kubectl(
            &[
                "delete",
                "mutatingwebhookconfiguration",
                "ci-pod-webhook",
                "--ignore-not-found",
            ],
            None,
        );
        let _ = self.cp().kubectl(
            &[
                "-n",
                WEBHOOK_NAMESPACE,
                "delete",
                "deployment,service,poddisruptionbudget",
                "ci-pod-webhook",
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
        // Gone from the API at once (their containers stop a moment later), so the next
        // install's Service and `doctor` see no terminating replica of this one.
        let _ = self.cp().kubectl(
            &[
                "-n",
                WEBHOOK_NAMESPACE,
                "delete",
                "pods",
                "-l",
                "app.kubernetes.io/component=webhook",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ],
            None,
        );
    }
}

/// Whether a pod's `Ready` condition is `True`.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Polls `ready` every 200 ms until it holds; panics after `limit` with `what`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut ready: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !ready().await {
        assert!(start.elapsed() < limit, "not {what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed()
}
