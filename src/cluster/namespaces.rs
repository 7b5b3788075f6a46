//! Namespace labels, kept in memory.
//!
//! Two namespace labels steer a review: the opt-in label (`<prefix>/pod-policy=enabled`
//! or `=warn`) and the class an admin pinned (`<prefix>/runner-class`). Asking the API
//! server on every review would put a round trip into every pod creation, so a
//! metadata-only watch keeps every namespace's labels in memory and a review reads them
//! without I/O. Only a namespace the mirror has not seen yet (created a moment ago, its
//! watch event still on the way) costs one direct GET, bounded by [`DIRECT_GET_TIMEOUT`].
//!
//! The watch needs RBAC `get`, `list` and `watch` on `namespaces`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use super::namespace_mirror as mirror;
use super::watcher::{Throttle, WARN_EVERY, Watcher};

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
    pub fn as_facts(&self) -> ci_pod_webhook_core::mutate::NamespaceFacts<'_> {
        match self {
            NamespaceLabels::TrustSelector => {
                ci_pod_webhook_core::mutate::NamespaceFacts::TrustSelector
            }
            NamespaceLabels::Known(labels) => {
                ci_pod_webhook_core::mutate::NamespaceFacts::Labels(labels)
            }
        }
    }
}

/// Namespace labels mirrored by a background watch, plus the direct GET for a
/// namespace the mirror lacks.
#[derive(Debug)]
pub(super) struct NamespaceIndex {
    mirror: mirror::Reader,
    pub(super) watcher: Watcher,
    api: Api<PartialObjectMeta<Namespace>>,
    get_warnings: Mutex<Throttle>,
}

impl NamespaceIndex {
    /// Starts the metadata-only watch of every namespace. Must run inside a Tokio runtime.
    pub(super) fn spawn(client: kube::Client, stop: CancellationToken) -> Self {
        // `Api<PartialObjectMeta<Namespace>>` asks for `PartialObjectMetadata(List)`, so
        // only metadata crosses the wire (what the deprecated `metadata_watcher` did).
        let api = Api::<PartialObjectMeta<Namespace>>::all(client);
        let (reader, writer) = mirror::mirror();
        let watcher = Watcher::spawn(
            "namespace",
            api.clone(),
            watcher::Config::default(),
            writer,
            None,
            stop,
        );
        Self {
            mirror: reader,
            watcher,
            api,
            get_warnings: Mutex::new(Throttle::new(WARN_EVERY)),
        }
    }

    /// The mirror's read side, for other watches that need namespace labels.
    pub(super) fn mirror(&self) -> mirror::Reader {
        self.mirror.clone()
    }

    /// The mirrored labels of `namespace`, if the mirror has them.
    pub(super) fn peek(&self, namespace: &str) -> Option<NamespaceLabels> {
        self.mirror.get(namespace).map(NamespaceLabels::Known)
    }

    /// The mirrored labels of `namespace`; for one the mirror lacks, one direct GET.
    pub(super) async fn labels(&self, namespace: &str) -> NamespaceLabels {
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
        let error = match tokio::time::timeout(DIRECT_GET_TIMEOUT, self.api.get_opt(namespace))
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
