//! `ci-pod-webhook serve` as a real process against the control plane, installed the way
//! `manifests/base` installs it: its namespace, ServiceAccount and RBAC applied as
//! rendered by `kubectl kustomize`, the server authenticated with a token of that
//! ServiceAccount (TokenRequest API), and the base MutatingWebhookConfiguration
//! registered with only its `clientConfig` rewritten to a loopback `url` and the test CA.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

use super::pki::{self, Credentials};
use super::process::{self, Component};
use super::{ControlPlane, OPT_IN, PATIENCE, job_pod};

/// The webhook's ServiceAccount and namespace in manifests/base.
pub const WEBHOOK_NAMESPACE: &str = "ci-pod-webhook";
pub const WEBHOOK_ACCOUNT: &str = "ci-pod-webhook";
/// A namespace whose only use is to check that a registered webhook is called.
const PROBE_NAMESPACE: &str = "e2e-webhook-probe";
/// On a control plane that runs one webhook per policy (the node's), the namespace label
/// that says which one reviews its pods ([`ControlPlane::register_webhook_for`]).
pub const POLICY_LABEL: &str = "e2e.ci.skao.int/policy";

/// Where `serve --kube auto` runs, for [`ControlPlane::start_webhook_in`].
#[derive(Clone, Copy, Debug)]
pub enum Place<'a> {
    /// In a pod: `KUBERNETES_SERVICE_HOST` and `_PORT` name the API server, as the
    /// kubelet sets them; with `kubeconfig` (a ServiceAccount's token) or with nothing,
    /// as a pod whose token is not mounted.
    InPod { kubeconfig: Option<&'a Path> },
    /// Neither the in-pod variables nor a kubeconfig.
    Outside,
}

/// A running `ci-pod-webhook serve`; killed when dropped.
pub struct Webhook {
    pub process: Component,
    /// The HTTPS port of `/mutate`.
    pub port: u16,
    /// The plain-HTTP admin port: /livez, /readyz, /metrics.
    pub admin_port: u16,
    /// The CA of its serving certificate (PEM).
    pub ca_pem: String,
}

impl Webhook {
    /// Kills the process (the port then refuses connections).
    pub fn stop(&self) {
        self.process.stop();
    }

    /// Every JSON log line the server wrote so far.
    pub fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.process.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The per-review log lines of reviews in `namespace`.
    pub fn reviews_in(&self, namespace: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["message"] == "review" && l["span"]["namespace"] == namespace)
            .collect()
    }

    /// The review lines of `namespace` once at least `at_least` are written (the server
    /// logs through a background writer, so a line may trail the answer a little).
    pub async fn reviews(&self, namespace: &str, at_least: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let lines = self.reviews_in(namespace);
            if lines.len() >= at_least || start.elapsed() > PATIENCE {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The admin port's `/readyz`: its status and body.
    pub async fn readyz(&self) -> (u16, String) {
        process::http_get(self.admin_port, "/readyz")
            .await
            .expect("GET /readyz on the admin port")
    }

    /// The JSON log lines at `level` (`ERROR`, `WARN`, …).
    pub fn lines_at(&self, level: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["level"] == level)
            .collect()
    }

    /// The admin port's `/metrics` text.
    pub async fn metrics(&self) -> String {
        match process::http_get(self.admin_port, "/metrics").await {
            Some((200, body)) => body,
            other => panic!("GET /metrics on the admin port: {other:?}"),
        }
    }
}

/// manifests/base rendered by `kubectl kustomize`, one JSON value per document.
pub fn base_manifests() -> &'static [Value] {
    static RENDERED: OnceLock<Vec<Value>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let base = format!("{}/manifests/base", env!("CARGO_MANIFEST_DIR"));
        let output = super::kubectl(None, &["kustomize", &base], None);
        assert!(
            output.status.success(),
            "kubectl kustomize {base}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let yaml = String::from_utf8(output.stdout).expect("kustomize prints UTF-8");
        serde_saphyr::from_multiple::<Value>(&yaml).expect("kustomize prints YAML")
    })
}

/// The rendered document of `kind`.
pub fn base_manifest(kind: &str) -> &'static Value {
    base_manifests()
        .iter()
        .find(|doc| doc["kind"] == kind)
        .unwrap_or_else(|| panic!("manifests/base renders no {kind}"))
}

impl ControlPlane {
    /// The control plane's shared webhook: started once as the webhook's ServiceAccount
    /// with manifests/base's policy, and registered with the base configuration.
    pub async fn webhook(&self) -> &Webhook {
        self.shared_webhook
            .get_or_init(|| async {
                let webhook = self.start_webhook().await;
                self.register_webhook(&webhook).await;
                webhook
            })
            .await
    }

    /// Starts `ci-pod-webhook serve` on free loopback ports with a certificate of its
    /// own, the policy of manifests/base, JSON logs, and a kubeconfig holding a token of
    /// the webhook's ServiceAccount; returns once its `/readyz` says ready (namespace
    /// watch synced).
    pub async fn start_webhook(&self) -> Webhook {
        let policy = format!("{}/manifests/base/policy.yaml", env!("CARGO_MANIFEST_DIR"));
        self.start_webhook_with_policy(Path::new(&policy)).await
    }

    /// As [`Self::start_webhook`], with the policy file `policy` (reloaded when it
    /// changes, checked every second).
    pub async fn start_webhook_with_policy(&self, policy: &Path) -> Webhook {
        let kubeconfig = self.service_account_kubeconfig().await.clone();
        self.start_webhook_with(policy, &kubeconfig).await
    }

    /// As [`Self::start_webhook_with_policy`], reaching the API server at `server` (a
    /// [`super::Proxy`] in front of it) as the webhook's ServiceAccount.
    pub async fn start_webhook_through(&self, policy: &Path, server: &str) -> Webhook {
        self.service_account_kubeconfig().await;
        let token = self.service_account_token().await;
        let path = self.dir.join(format!(
            "webhook-via-{}.kubeconfig",
            self.next_webhook_number()
        ));
        let config = pki::kubeconfig(server, self.ca_pem(), &Credentials::Token(&token));
        std::fs::write(&path, config).expect("write the kubeconfig");
        self.start_webhook_with(policy, &path).await
    }

    async fn start_webhook_with(&self, policy: &Path, kubeconfig: &Path) -> Webhook {
        let kubeconfig = kubeconfig.to_path_buf();
        self.spawn_webhook(
            policy,
            move |command| {
                command.env("KUBECONFIG", &kubeconfig);
            },
            "/readyz",
        )
        .await
    }

    /// Starts `ci-pod-webhook serve` with manifests/base's policy where `--kube auto`
    /// finds `place`, and returns once it is live (`/livez`), ready or not.
    pub async fn start_webhook_in(&self, place: Place<'_>) -> Webhook {
        let policy = repo_file("manifests/base/policy.yaml");
        // No ~/.kube/config to find (a number of its own keeps parallel tests apart).
        let home = self
            .dir
            .join(format!("webhook-home-{}", self.next_webhook_number()));
        std::fs::create_dir_all(&home).expect("mkdir an empty home");
        let (in_pod, kubeconfig) = match place {
            Place::InPod { kubeconfig } => (true, kubeconfig.map(Path::to_path_buf)),
            Place::Outside => (false, None),
        };
        let port = self.port().to_string();
        self.spawn_webhook(
            &policy,
            move |command| {
                command.env("HOME", &home).env_remove("KUBECONFIG");
                if let Some(path) = &kubeconfig {
                    command.env("KUBECONFIG", path);
                }
                if in_pod {
                    // What the kubelet sets in every container. The in-cluster token file
                    // (/var/run/secrets/kubernetes.io/serviceaccount/token) does not exist
                    // on a test machine: a pod without its token.
                    command
                        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
                        .env("KUBERNETES_SERVICE_PORT", &port);
                } else {
                    command
                        .env_remove("KUBERNETES_SERVICE_HOST")
                        .env_remove("KUBERNETES_SERVICE_PORT");
                }
            },
            "/livez",
        )
        .await
    }

    /// Starts `serve` on free loopback ports with a certificate of its own, `policy`,
    /// JSON logs and whatever `configure` adds; returns once `wait_for` (an admin path)
    /// answers 200.
    async fn spawn_webhook(
        &self,
        policy: &Path,
        configure: impl Fn(&mut std::process::Command),
        wait_for: &'static str,
    ) -> Webhook {
        let number = self.next_webhook_number();
        let dir = self.dir.join(format!("webhook-{number}"));
        std::fs::create_dir_all(&dir).expect("mkdir webhook dir");
        let names = ["127.0.0.1".to_string(), "localhost".to_string()];
        let certs = ci_pod_webhook::certs::generate("e2e-webhook", &names, 1).expect("certs");
        std::fs::write(dir.join("tls.crt"), &certs.tls_cert).expect("write cert");
        std::fs::write(dir.join("tls.key"), &certs.tls_key).expect("write key");
        let log = self.dir.join(format!("webhook-{number}.log"));
        let (process, port, admin_port) = process::retry_on_port_clash("ci-pod-webhook", || {
            let (port, admin_port) = (process::free_port(), process::free_port());
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"));
            command
                .arg("serve")
                .arg(format!("--listen=127.0.0.1:{port}"))
                .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
                .arg("--tls-cert")
                .arg(dir.join("tls.crt"))
                .arg("--tls-key")
                .arg(dir.join("tls.key"))
                .arg(format!("--policy={}", policy.display()))
                .arg("--reload-interval=1s")
                .args(["--log-format=json", "--log-level=info,ci_pod_webhook=debug"])
                .args(["--drain-timeout=1s"])
                .env("TOKIO_WORKER_THREADS", "2")
                .env_remove("CI_POD_WEBHOOK_KUBE");
            configure(&mut command);
            let component =
                Component::spawn("ci-pod-webhook", command, log.clone(), &self.watchdog);
            async move {
                component
                    .wait_until(PATIENCE, || async {
                        matches!(
                            process::http_get(admin_port, wait_for).await,
                            Some((200, _))
                        )
                    })
                    .await?;
                Ok((component, port, admin_port))
            }
        })
        .await;
        Webhook {
            process,
            port,
            admin_port,
            ca_pem: certs.ca_cert,
        }
    }

    /// The kubeconfig of the webhook's ServiceAccount (made once): manifests/base's
    /// Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding applied as rendered,
    /// and a token for the account from the TokenRequest API. Nothing else grants it
    /// anything.
    pub async fn service_account_kubeconfig(&self) -> &PathBuf {
        self.service_account
            .get_or_init(|| async {
                let wanted = [
                    "Namespace",
                    "ServiceAccount",
                    "ClusterRole",
                    "ClusterRoleBinding",
                ];
                let items: Vec<&Value> = base_manifests()
                    .iter()
                    .filter(|doc| wanted.iter().any(|kind| doc["kind"] == *kind))
                    .collect();
                assert_eq!(
                    items.len(),
                    wanted.len(),
                    "manifests/base has each of {wanted:?}"
                );
                let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
                let list = serde_json::to_vec(&list).expect("List");
                let output = self.kubectl(&["apply", "-f", "-"], Some(&list));
                assert!(
                    output.status.success(),
                    "kubectl apply of manifests/base RBAC: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let token = self.service_account_token().await;
                let path = self.dir.join("webhook-serviceaccount.kubeconfig");
                let config =
                    pki::kubeconfig(&self.server, self.ca_pem(), &Credentials::Token(&token));
                std::fs::write(&path, config).expect("write the ServiceAccount kubeconfig");
                path
            })
            .await
    }

    /// A fresh one-hour token of the webhook's ServiceAccount.
    pub async fn service_account_token(&self) -> String {
        let accounts = Api::<ServiceAccount>::namespaced(self.client().await, WEBHOOK_NAMESPACE);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let answer = accounts
            .create_token_request(WEBHOOK_ACCOUNT, &PostParams::default(), &request)
            .await
            .expect("TokenRequest for the webhook's ServiceAccount");
        answer.status.expect("TokenRequest status").token
    }

    /// Registers manifests/base's MutatingWebhookConfiguration with every webhook's
    /// `clientConfig` pointing at `webhook` (the path of its `service` kept), and
    /// waits until the API server calls it.
    pub async fn register_webhook(&self, webhook: &Webhook) {
        self.register(webhook, None).await;
    }

    /// As [`Self::register_webhook`], for namespaces labelled [`POLICY_LABEL`]`=policy`
    /// only, under a configuration name of its own: several webhooks, each with its
    /// policy, on one control plane.
    pub async fn register_webhook_for(&self, webhook: &Webhook, policy: &str) {
        self.register(webhook, Some(policy)).await;
    }

    async fn register(&self, webhook: &Webhook, policy: Option<&str>) {
        let mut configuration = base_manifest("MutatingWebhookConfiguration").clone();
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&webhook.ca_pem);
        if let Some(policy) = policy {
            let name = configuration["metadata"]["name"].as_str().expect("a name");
            configuration["metadata"]["name"] = json!(format!("{name}-{policy}"));
        }
        for entry in configuration["webhooks"].as_array_mut().expect("webhooks") {
            let path = entry
                .pointer("/clientConfig/service/path")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string();
            entry["clientConfig"] = json!({
                "url": format!("https://127.0.0.1:{}{path}", webhook.port),
                "caBundle": ca_bundle,
            });
            if let Some(policy) = policy {
                entry["namespaceSelector"]["matchLabels"] = json!({ POLICY_LABEL: policy });
            }
        }
        let resource = ApiResource::erase::<MutatingWebhookConfiguration>(&());
        let object: DynamicObject = serde_json::from_value(configuration).expect("object");
        let api = Api::<DynamicObject>::all_with(self.client().await, &resource);
        // A registration left by an earlier attempt that failed half-way.
        let name = object.metadata.name.clone().expect("a name");
        if api
            .get_opt(&name)
            .await
            .expect("get the configuration")
            .is_some()
        {
            api.delete(&name, &Default::default())
                .await
                .expect("delete the old configuration");
        }
        api.create(&PostParams::default(), &object)
            .await
            .expect("create the MutatingWebhookConfiguration");
        self.wait_until_called(policy).await;
    }

    /// A new webhook configuration takes the API server about a second to use: dry-run
    /// a job pod in an opted-in namespace (of `policy`) until it comes back mutated.
    async fn wait_until_called(&self, policy: Option<&str>) {
        let probe = self.probe_namespace(policy).await;
        let pod = job_pod("gitlab-runner-17.9-job-pod.json");
        let start = Instant::now();
        loop {
            let last = match probe.dry_run_pod(&pod).await {
                Ok(stored) if super::annotations(&stored).contains_key("ci.skao.int/class") => {
                    return;
                }
                Ok(stored) => format!("annotations {:?}", super::annotations(&stored)),
                Err(error) => error.to_string(),
            };
            assert!(
                start.elapsed() < PATIENCE,
                "the API server did not call the registered webhook within {PATIENCE:?}: {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The opted-in namespace of [`Self::wait_until_called`], made on first use.
    async fn probe_namespace(&self, policy: Option<&str>) -> super::TestNamespace<'_> {
        let name = policy.map_or(PROBE_NAMESPACE.to_string(), |p| {
            format!("{PROBE_NAMESPACE}-{p}")
        });
        let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client().await);
        let exists = namespaces
            .get_opt(&name)
            .await
            .expect("get the probe namespace")
            .is_some();
        if exists {
            super::TestNamespace { name, cp: self }
        } else {
            let mut labels = vec![OPT_IN];
            if let Some(policy) = policy {
                labels.push((POLICY_LABEL, policy));
            }
            self.namespace(&name, &labels).await
        }
    }
}

/// The path of a file in the repository.
pub fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}
