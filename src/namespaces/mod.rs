//! What the webhook knows about namespaces: their labels, kept in memory.
//!
//! Two namespace labels steer a review: the opt-in label (`<prefix>/pod-policy=enabled`)
//! and the class an admin pinned (`<prefix>/runner-class`). Asking the API server on
//! every review would put a round trip into every pod creation, so a metadata-only
//! watch keeps every namespace's labels in memory and a review reads them without I/O.
//! Only a namespace the mirror has not seen yet (created a moment ago, its watch event
//! still on the way) costs one direct GET, bounded by [`DIRECT_GET_TIMEOUT`].
//!
//! Without cluster access (`--kube off`, or `--kube auto` with neither a kubeconfig nor
//! an in-cluster environment) there is nothing to watch: the webhook then trusts the
//! MutatingWebhookConfiguration's namespaceSelector, which already requires the opt-in
//! label, and no namespace has a class label.
//!
//! The watch needs RBAC `get`, `list` and `watch` on `namespaces`.

mod mirror;
mod task;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::core::PartialObjectMeta;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long a review waits for the direct GET of a namespace the mirror lacks.
/// Well inside the webhook's own admission timeout, so a slow API server costs a
/// review a second at most instead of failing it.
pub const DIRECT_GET_TIMEOUT: Duration = Duration::from_secs(1);

/// What the webhook knows about one namespace, owned so it can cross an await.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceLabels {
    /// No cluster access: trust the webhook configuration's namespaceSelector.
    TrustSelector,
    /// Labels from the cluster (empty map if the namespace has none or does not exist).
    Known(Arc<BTreeMap<String, String>>),
}

impl NamespaceLabels {
    /// The borrowed view the pure core takes.
    pub fn as_facts(&self) -> crate::mutate::NamespaceFacts<'_> {
        match self {
            NamespaceLabels::TrustSelector => crate::mutate::NamespaceFacts::TrustSelector,
            NamespaceLabels::Known(labels) => crate::mutate::NamespaceFacts::Labels(labels),
        }
    }
}

/// The `--kube` flag: where namespace labels may come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KubeMode {
    /// Watch namespaces when a kubeconfig or in-cluster config is found, else as `off`.
    Auto,
    /// Never contact the API server; trust the webhook configuration's namespaceSelector.
    Off,
}

/// Where namespace facts come from.
#[derive(Clone, Debug)]
pub enum NamespaceSource {
    /// No cluster: every namespace counts as opted in, with no class label.
    Off,
    /// Labels mirrored from the cluster by a watch.
    Cluster(NamespaceCache),
}

impl NamespaceSource {
    /// `mode` is the `--kube auto|off` flag; `auto` tries `kube::Client::try_default()`
    /// (kubeconfig, then in-cluster config) and falls back to [`NamespaceSource::Off`]
    /// when neither is found, saying so once. The watcher stops when `shutdown` is
    /// cancelled. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// None today: a missing cluster configuration is a fallback, not an error. The
    /// `Result` leaves room for configuration that is present but unusable.
    pub async fn start(mode: KubeMode, shutdown: CancellationToken) -> anyhow::Result<Self> {
        const TRUST: &str = "every namespace counts as opted in with no class label: \
             trusting the webhook configuration's namespaceSelector";
        match mode {
            KubeMode::Off => {
                tracing::info!(kube = "off", "no namespace watcher; {TRUST}");
                Ok(Self::Off)
            }
            KubeMode::Auto => match kube::Client::try_default().await {
                Ok(client) => {
                    tracing::info!("watching namespace labels");
                    Ok(Self::Cluster(NamespaceCache::spawn(client, &shutdown)))
                }
                Err(error) => {
                    // kube's message already carries its causes; its source chain repeats them.
                    tracing::warn!(
                        kube = "auto",
                        %error,
                        "no kubeconfig or in-cluster config, no namespace watcher; {TRUST}"
                    );
                    Ok(Self::Off)
                }
            },
        }
    }

    /// Spawns the namespace watcher on `client`; it stops when the last clone of the
    /// returned source is dropped. Must run inside a Tokio runtime.
    #[must_use]
    pub fn from_client(client: kube::Client) -> Self {
        Self::Cluster(NamespaceCache::spawn(client, &CancellationToken::new()))
    }

    /// `Off`: always. `Cluster`: once the first full list of namespaces is in memory
    /// (and from then on, also while the watch reconnects).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        match self {
            Self::Off => true,
            Self::Cluster(cache) => cache.is_ready(),
        }
    }

    /// Resolves when [`Self::is_ready`] is true, or when the watcher has stopped
    /// before ever syncing (shutdown).
    pub async fn wait_ready(&self) {
        if let Self::Cluster(cache) = self {
            cache.wait_ready().await;
        }
    }

    /// The labels of `namespace`, the request's authoritative `namespace` field.
    pub async fn labels(&self, namespace: &str) -> NamespaceLabels {
        match self {
            Self::Off => NamespaceLabels::TrustSelector,
            Self::Cluster(cache) => cache.labels(namespace).await,
        }
    }

    /// The labels of `namespace` if known without asking the API server.
    pub fn peek(&self, namespace: &str) -> Option<NamespaceLabels> {
        match self {
            Self::Off => Some(NamespaceLabels::TrustSelector),
            Self::Cluster(cache) => cache.peek(namespace),
        }
    }
}

/// Namespace labels mirrored by a background watch. Cheap to clone; the watch stops
/// when its shutdown token is cancelled or the last clone is dropped.
#[derive(Clone, Debug)]
pub struct NamespaceCache(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    mirror: mirror::Reader,
    ready: watch::Receiver<bool>,
    api: Api<PartialObjectMeta<Namespace>>,
    get_warnings: Mutex<task::Throttle>,
    _stop_when_dropped: DropGuard,
}

impl NamespaceCache {
    fn spawn(client: kube::Client, shutdown: &CancellationToken) -> Self {
        let api = Api::<PartialObjectMeta<Namespace>>::all(client);
        let (reader, writer) = mirror::mirror();
        let (ready_tx, ready) = watch::channel(false);
        let stop = shutdown.child_token();
        tokio::spawn(task::run(api.clone(), writer, ready_tx, stop.clone()));
        Self(Arc::new(Shared {
            mirror: reader,
            ready,
            api,
            get_warnings: Mutex::new(task::Throttle::new(task::WARN_EVERY)),
            _stop_when_dropped: stop.drop_guard(),
        }))
    }

    /// True once the first full list of namespaces is in memory.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        *self.0.ready.borrow()
    }

    /// Resolves once the first full list is in memory, or when the watcher stopped.
    pub async fn wait_ready(&self) {
        let mut ready = self.0.ready.clone();
        // An error means the watcher task ended (shutdown): nothing left to wait for.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// The mirrored labels of `namespace`, if the mirror has them.
    pub fn peek(&self, namespace: &str) -> Option<NamespaceLabels> {
        self.0.mirror.get(namespace).map(NamespaceLabels::Known)
    }

    /// The mirrored labels of `namespace`; for one the mirror lacks, one direct GET.
    pub async fn labels(&self, namespace: &str) -> NamespaceLabels {
        if let Some(labels) = self.peek(namespace) {
            return labels;
        }
        if namespace.is_empty() {
            // Not a namespace at all, so certainly not an opted-in one.
            return NamespaceLabels::Known(Arc::default());
        }
        self.fetch(namespace).await
    }

    /// The mirror lacks `namespace`: most likely it was created a moment ago and its
    /// watch event has not arrived, so ask rather than guess. The answer is not stored:
    /// the watch will deliver it, and storing it could resurrect a namespace whose
    /// deletion the watch reports in between.
    async fn fetch(&self, namespace: &str) -> NamespaceLabels {
        tracing::debug!(
            namespace,
            "namespace not in the mirror; asking the API server"
        );
        let error = match tokio::time::timeout(DIRECT_GET_TIMEOUT, self.0.api.get_opt(namespace))
            .await
        {
            Ok(Ok(Some(found))) => {
                return NamespaceLabels::Known(Arc::new(found.metadata.labels.unwrap_or_default()));
            }
            // The namespace does not exist: no labels, so not opted in.
            Ok(Ok(None)) => return NamespaceLabels::Known(Arc::default()),
            Ok(Err(error)) => format!("{:#}", anyhow::Error::new(error)),
            Err(_elapsed) => format!("no answer within {DIRECT_GET_TIMEOUT:?}"),
        };
        // The API server only sends reviews of pods in namespaces that match the
        // webhook configuration's namespaceSelector, and that selector requires the
        // opt-in label: the request itself is evidence of opt-in. The mirror is defence
        // in depth plus the source of the class label, so when the API server cannot
        // answer, trusting the selector (opted in, no class label) mutates the pods
        // admins asked for, where "not opted in" would silently skip them.
        let held_back = self
            .0
            .get_warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(Instant::now());
        if let Some(held_back) = held_back {
            tracing::warn!(
                namespace,
                %error,
                held_back,
                "cannot read labels of a namespace missing from the mirror; \
                 trusting the webhook configuration's namespaceSelector"
            );
        } else {
            tracing::debug!(namespace, %error, "cannot read namespace labels; trusting the selector");
        }
        NamespaceLabels::TrustSelector
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[tokio::test]
    async fn without_a_cluster_every_namespace_trusts_the_selector() {
        let source = NamespaceSource::start(KubeMode::Off, CancellationToken::new())
            .await
            .expect("off never fails");
        assert!(matches!(source, NamespaceSource::Off));
        assert!(source.is_ready());
        source.wait_ready().await;
        assert_eq!(source.labels("ci").await, NamespaceLabels::TrustSelector);
        assert_eq!(source.labels("").await, NamespaceLabels::TrustSelector);
    }

    #[tokio::test]
    async fn cancelling_shutdown_stops_the_watcher() {
        // A port nobody listens on: the watcher keeps failing and backing off.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", closed.local_addr().expect("local addr"));
        drop(closed);
        let config = kube::Config::new(url.parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");

        let shutdown = CancellationToken::new();
        let cache = NamespaceCache::spawn(client, &shutdown);
        assert!(!cache.is_ready());
        shutdown.cancel();
        // `wait_ready` resolves without a sync only once the task has dropped its end.
        tokio::time::timeout(Duration::from_secs(10), cache.wait_ready())
            .await
            .expect("the watcher task ends on shutdown");
        assert!(!cache.is_ready());
    }

    #[test]
    fn the_kube_flag_accepts_auto_and_off() {
        assert_eq!(KubeMode::from_str("auto", false), Ok(KubeMode::Auto));
        assert_eq!(KubeMode::from_str("off", false), Ok(KubeMode::Off));
        assert!(KubeMode::from_str("on", false).is_err());
    }
}
