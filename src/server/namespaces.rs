//! The server's seam to namespace facts: where a review's namespace labels come from.
//!
//! The server asks three things: is the source ready (for `/readyz`), what are the
//! labels of this namespace if they are at hand (while parsing a review), and what are
//! they at all (possibly awaiting a cache miss). An enum
//! rather than a trait object, so the lookup can be `async` without boxing a future per
//! review.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::namespaces::{NamespaceLabels, NamespaceSource};

/// Where namespace labels come from.
#[derive(Clone, Debug)]
pub enum Namespaces {
    /// The `--kube` source: the cluster watch, or trusting the namespaceSelector.
    Source(NamespaceSource),
    /// A fixed set of namespaces and their labels; a namespace not listed has no labels.
    /// For tests, which have no cluster.
    Fixed(Arc<HashMap<String, Arc<BTreeMap<String, String>>>>),
}

impl Default for Namespaces {
    /// No cluster: trust the webhook configuration's namespaceSelector.
    fn default() -> Self {
        Namespaces::Source(NamespaceSource::Off)
    }
}

impl Namespaces {
    /// A fixed source from `(namespace, [(label, value)])` pairs.
    pub fn fixed<'a>(
        namespaces: impl IntoIterator<Item = (&'a str, &'a [(&'a str, &'a str)])>,
    ) -> Self {
        let map = namespaces
            .into_iter()
            .map(|(name, labels)| {
                let labels = labels
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect();
                (name.to_string(), Arc::new(labels))
            })
            .collect();
        Namespaces::Fixed(Arc::new(map))
    }

    /// Whether reviews can be answered with full knowledge (part of `/readyz`).
    pub fn is_ready(&self) -> bool {
        match self {
            Namespaces::Source(source) => source.is_ready(),
            Namespaces::Fixed(_) => true,
        }
    }

    /// The labels of `namespace` if they are at hand without waiting (no cache miss).
    pub fn peek(&self, namespace: &str) -> Option<NamespaceLabels> {
        match self {
            Namespaces::Source(source) => source.peek(namespace),
            Namespaces::Fixed(map) => Some(NamespaceLabels::Known(
                map.get(namespace).cloned().unwrap_or_default(),
            )),
        }
    }

    /// The labels of `namespace`, the request's authoritative namespace.
    pub async fn labels(&self, namespace: &str) -> NamespaceLabels {
        match self {
            Namespaces::Source(source) => source.labels(namespace).await,
            Namespaces::Fixed(map) => {
                NamespaceLabels::Known(map.get(namespace).cloned().unwrap_or_default())
            }
        }
    }
}
