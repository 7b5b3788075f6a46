//! Reading the cluster: every object the checks look at, fetched once and concurrently.
//! A read that fails (most often RBAC: `forbidden`) is kept as its message, so the
//! check that needed it can say so instead of the whole run stopping.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::{Api, Client};

/// The result of one read: the object(s), or why they could not be read.
pub type Fetched<T> = Result<T, String>;

/// Where the install lives; the defaults are the names `manifests/` uses.
#[derive(Debug, Clone)]
pub struct Names {
    pub namespace: String,
    pub policy_config_map: String,
    /// The key of the policy file in the ConfigMap.
    pub policy_key: String,
    pub tls_secret: String,
    pub deployment: String,
    pub webhook_configuration: String,
    pub docker_namespace: String,
    pub docker_daemon_set: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            namespace: "ci-pod-webhook".into(),
            policy_config_map: "ci-pod-webhook-policy".into(),
            policy_key: "policy.yaml".into(),
            tls_secret: "ci-pod-webhook-tls".into(),
            deployment: "ci-pod-webhook".into(),
            webhook_configuration: "ci-pod-webhook".into(),
            docker_namespace: "ci-dind".into(),
            docker_daemon_set: "ci-dind".into(),
        }
    }
}

/// Everything the checks read, as fetched.
#[derive(Debug)]
pub struct Snapshot {
    pub nodes: Fetched<Vec<Node>>,
    pub runtime_classes: Fetched<Vec<String>>,
    pub namespaces: Fetched<Vec<Namespace>>,
    /// The policy text from the ConfigMap; `Ok(None)` when the ConfigMap (or its key)
    /// does not exist.
    pub policy_text: Fetched<Option<String>>,
    pub webhook_configuration: Fetched<Option<MutatingWebhookConfiguration>>,
    pub tls_secret: Fetched<Option<Secret>>,
    pub deployment: Fetched<Option<Deployment>>,
    pub daemon_set: Fetched<Option<DaemonSet>>,
}

fn message(error: kube::Error) -> String {
    match error {
        // The API server's own message names the user, verb and resource.
        kube::Error::Api(status) => status.message.clone(),
        other => format!("{:#}", anyhow::Error::new(other)),
    }
}

async fn list<K>(api: Api<K>) -> Fetched<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(message)
}

fn not_read<T>() -> Fetched<T> {
    Err("not read with --pre".to_string())
}

async fn get<K>(api: Api<K>, name: &str) -> Fetched<Option<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.map_err(message)
}

impl Snapshot {
    /// Reads the cluster. With `pre`, only what exists before an install (nodes,
    /// RuntimeClasses, namespaces, and the policy ConfigMap if it is there).
    pub async fn fetch(client: &Client, names: &Names, pre: bool) -> Snapshot {
        let ns = names.namespace.as_str();
        let runtime_classes = async {
            list(Api::<PartialObjectMeta<RuntimeClass>>::all(client.clone()))
                .await
                .map(|l| l.into_iter().filter_map(|o| o.metadata.name).collect())
        };
        let policy_text = async {
            get(
                Api::<ConfigMap>::namespaced(client.clone(), ns),
                &names.policy_config_map,
            )
            .await
            .map(|cm| cm.and_then(|cm| cm.data?.remove(&names.policy_key)))
        };
        let installed = async {
            if pre {
                return (not_read(), not_read(), not_read(), not_read());
            }
            futures::join!(
                get(
                    Api::<MutatingWebhookConfiguration>::all(client.clone()),
                    &names.webhook_configuration
                ),
                get(
                    Api::<Secret>::namespaced(client.clone(), ns),
                    &names.tls_secret
                ),
                get(
                    Api::<Deployment>::namespaced(client.clone(), ns),
                    &names.deployment
                ),
                get(
                    Api::<DaemonSet>::namespaced(client.clone(), &names.docker_namespace),
                    &names.docker_daemon_set
                ),
            )
        };
        let (nodes, runtime_classes, namespaces, policy_text, installed) = futures::join!(
            list(Api::<Node>::all(client.clone())),
            runtime_classes,
            list(Api::<Namespace>::all(client.clone())),
            policy_text,
            installed,
        );
        let (webhook_configuration, tls_secret, deployment, daemon_set) = installed;
        Snapshot {
            nodes,
            runtime_classes,
            namespaces,
            policy_text,
            webhook_configuration,
            tls_secret,
            deployment,
            daemon_set,
        }
    }
}
