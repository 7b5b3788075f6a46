//! Reading the cluster: every object the checks look at, fetched once and concurrently.
//! A read that fails (most often RBAC: `forbidden`) is kept as its message, so the
//! check that needed it can say so instead of the whole run stopping.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Client};

use super::Scope;
use crate::cluster::access::{self, Access};

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
    /// The Service, when the webhook configuration names none (it is absent).
    pub service: String,
    /// The webhook's ServiceAccount, when the Deployment cannot be read.
    pub service_account: String,
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
            service: "ci-pod-webhook".into(),
            service_account: "ci-pod-webhook".into(),
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
    /// The Service the webhook configuration dials, and its EndpointSlices.
    pub service: Fetched<Option<Service>>,
    pub endpoint_slices: Fetched<Vec<EndpointSlice>>,
    /// The ServiceAccount the webhook's pods run as, `(namespace, name)`.
    pub account: (String, String),
    pub service_account: Fetched<Option<ServiceAccount>>,
    /// The API server's answer, per access the server needs and verb: may the account?
    pub access: Vec<AccessAnswer>,
}

/// A SubjectAccessReview's answer.
#[derive(Debug, Clone)]
pub struct AccessAnswer {
    pub access: Access,
    pub verb: &'static str,
    pub allowed: Fetched<bool>,
}

/// The ServiceAccount whose access the server needs: the Deployment's, or `names`'.
fn account_of(deployment: Option<&Deployment>, names: &Names) -> (String, String) {
    let namespace = deployment
        .and_then(|d| d.metadata.namespace.clone())
        .unwrap_or_else(|| names.namespace.clone());
    let name = match deployment {
        Some(d) => d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.service_account_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string()),
        None => names.service_account.clone(),
    };
    (namespace, name)
}

/// The Service the webhook configuration's job entry dials, `(namespace, name)`; the
/// default names when there is no configuration; `None` when it dials a URL.
pub fn dialled_service(
    configuration: Option<&MutatingWebhookConfiguration>,
    names: &Names,
) -> Option<(String, String)> {
    match configuration.and_then(super::install::job_entry) {
        Some(entry) => entry
            .client_config
            .service
            .as_ref()
            .map(|s| (s.namespace.clone(), s.name.clone())),
        None => Some((names.namespace.clone(), names.service.clone())),
    }
}

/// Asks the API server whether the ServiceAccount `namespace/name` may `verb` the
/// resource of `access`, cluster-wide, as it would authorize the account's own request.
async fn may(
    client: &Client,
    (namespace, name): &(String, String),
    access: Access,
    verb: &'static str,
) -> Fetched<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{namespace}:{name}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(access.group.into()),
                resource: Some(access.resource.into()),
                verb: Some(verb.into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map(|answer| answer.status.is_some_and(|s| s.allowed))
        .map_err(message)
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
    Err("not read in this scope".to_string())
}

async fn get<K>(api: Api<K>, name: &str) -> Fetched<Option<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.map_err(message)
}

impl Snapshot {
    /// Reads the cluster. With [`Scope::Pre`], only what exists before an install
    /// (nodes, RuntimeClasses, namespaces, and the policy ConfigMap if it is there); with
    /// [`Scope::Install`], not what only the runner classes and the Docker daemon need
    /// (nodes, RuntimeClasses, the DaemonSet). Then, for an install, what the first
    /// reads point to: the Service the webhook configuration dials and its endpoints,
    /// the Deployment's ServiceAccount and what it may do.
    pub async fn fetch(client: &Client, names: &Names, scope: Scope) -> Snapshot {
        let ns = names.namespace.as_str();
        let placement = scope != Scope::Install;
        let install = scope != Scope::Pre;
        let nodes = async {
            if !placement {
                return not_read();
            }
            list(Api::<Node>::all(client.clone())).await
        };
        let runtime_classes = async {
            if !placement {
                return not_read();
            }
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
            if !install {
                return (not_read(), not_read(), not_read());
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
            )
        };
        let daemon_set = async {
            if scope != Scope::All {
                return not_read();
            }
            get(
                Api::<DaemonSet>::namespaced(client.clone(), &names.docker_namespace),
                &names.docker_daemon_set,
            )
            .await
        };
        let (nodes, runtime_classes, namespaces, policy_text, installed, daemon_set) = futures::join!(
            nodes,
            runtime_classes,
            list(Api::<Namespace>::all(client.clone())),
            policy_text,
            installed,
            daemon_set,
        );
        let (webhook_configuration, tls_secret, deployment) = installed;
        let account = account_of(deployment.as_ref().ok().and_then(Option::as_ref), names);
        let mut snapshot = Snapshot {
            nodes,
            runtime_classes,
            namespaces,
            policy_text,
            webhook_configuration,
            tls_secret,
            deployment,
            daemon_set,
            service: not_read(),
            endpoint_slices: not_read(),
            account,
            service_account: not_read(),
            access: Vec::new(),
        };
        if install {
            snapshot.fetch_install_links(client, names).await;
        }
        snapshot
    }

    /// The reads that depend on the first ones.
    async fn fetch_install_links(&mut self, client: &Client, names: &Names) {
        let configuration = self
            .webhook_configuration
            .as_ref()
            .ok()
            .and_then(Option::as_ref);
        let service = async {
            let Some((namespace, name)) = dialled_service(configuration, names) else {
                return (Ok(None), Ok(Vec::new()));
            };
            let slice_api = Api::<EndpointSlice>::namespaced(client.clone(), &namespace);
            let by_service =
                ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
            let slices = slice_api.list(&by_service);
            let (service, slices) = futures::join!(
                get(
                    Api::<Service>::namespaced(client.clone(), &namespace),
                    &name
                ),
                slices
            );
            (service, slices.map(|l| l.items).map_err(message))
        };
        let account = &self.account;
        let service_account = get(
            Api::<ServiceAccount>::namespaced(client.clone(), &account.0),
            &account.1,
        );
        let asks = access::ALL.iter().flat_map(|access| {
            access.verbs.iter().map(move |verb| async move {
                AccessAnswer {
                    access: *access,
                    verb,
                    allowed: may(client, account, *access, verb).await,
                }
            })
        });
        let ((service, slices), service_account, answers) =
            futures::join!(service, service_account, futures::future::join_all(asks));
        self.service = service;
        self.endpoint_slices = slices;
        self.service_account = service_account;
        self.access = answers;
    }
}
