//! Which RuntimeClasses exist in the cluster, kept in memory by a watch.
//!
//! A GPU class sets `runtimeClassName` (default `nvidia`); when no such RuntimeClass
//! exists the API server refuses the pod after the webhook patched it. Knowing the names
//! lets the core deny such a pod with a message that says what the admin must do
//! (see `mutate::admissible`). A review reads the names with one atomic load.
//!
//! Until the first full list arrives, and without cluster access (`--kube off`), the
//! names are unknown and the core changes nothing. A watch refused by RBAC (an older
//! ClusterRole without `runtimeclasses`) keeps them unknown; it does not hold up
//! readiness, since reviews are answered without it.
//!
//! The watch needs RBAC `list` and `watch` on `runtimeclasses.node.k8s.io`.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use super::watcher::{Applied, Store, Watcher};
use ci_pod_webhook_core::mutate::RuntimeClassFacts;

/// The RuntimeClass names, when known. Cheap to clone; the watch that feeds it stops
/// with the cluster's other watches.
#[derive(Clone, Debug, Default)]
pub struct RuntimeClasses {
    names: Arc<ArcSwapOption<BTreeSet<String>>>,
}

impl RuntimeClasses {
    /// Names never known: the core leaves runtime classes as the policy says.
    #[must_use]
    pub fn unknown() -> Self {
        Self::default()
    }

    /// A fixed set of names, for tests.
    #[must_use]
    pub fn fixed<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let set: BTreeSet<String> = names.into_iter().map(str::to_string).collect();
        Self {
            names: Arc::new(ArcSwapOption::from_pointee(set)),
        }
    }

    /// Spawns the metadata-only watch on `client`; it is not part of readiness. Must
    /// run inside a Tokio runtime.
    pub(super) fn watch(client: kube::Client, stop: CancellationToken) -> Self {
        let classes = Self::default();
        let api = Api::<PartialObjectMeta<RuntimeClass>>::all(client);
        let store = Names {
            mirror: Mirror::default(),
            names: Arc::clone(&classes.names),
        };
        Watcher::spawn(
            "RuntimeClass",
            api,
            watcher::Config::default(),
            store,
            None,
            stop,
        );
        classes
    }

    /// The names as they are now; `None` when unknown.
    #[must_use]
    pub fn current(&self) -> Option<Arc<BTreeSet<String>>> {
        self.names.load_full()
    }

    /// The facts the core takes, borrowed from what [`Self::current`] returned.
    pub fn facts(current: Option<&Arc<BTreeSet<String>>>) -> RuntimeClassFacts<'_> {
        RuntimeClassFacts::from(current.map(AsRef::as_ref))
    }
}

/// The watch's store: publishes each complete set of names to the reviews.
struct Names {
    mirror: Mirror,
    names: Arc<ArcSwapOption<BTreeSet<String>>>,
}

impl Store<PartialObjectMeta<RuntimeClass>> for Names {
    fn apply(&mut self, event: Event<PartialObjectMeta<RuntimeClass>>) -> Applied {
        let listed = matches!(event, Event::InitDone);
        if let Some(set) = self.mirror.apply(event) {
            tracing::debug!(runtime_classes = set.len(), "RuntimeClasses updated");
            self.names.store(Some(Arc::new(set)));
        }
        if listed {
            Applied::Listed
        } else {
            Applied::Updated
        }
    }

    fn held(&self) -> usize {
        self.mirror.current.as_ref().map_or(0, BTreeSet::len)
    }

    fn access(&self) -> super::access::Access {
        super::access::RUNTIME_CLASSES
    }

    fn before_first_list(&self) -> &'static str {
        "GPU pods are not checked for a missing RuntimeClass until it works \
         (RBAC list/watch on runtimeclasses.node.k8s.io)"
    }
}

/// The names as the watch events build them: a relist collects into `pending` and
/// replaces the set only when complete, so a review never sees half a list.
#[derive(Debug, Default)]
struct Mirror {
    current: Option<BTreeSet<String>>,
    pending: BTreeSet<String>,
}

impl Mirror {
    /// Applies one event; returns the new set when it changed what reviews see.
    fn apply(&mut self, event: Event<PartialObjectMeta<RuntimeClass>>) -> Option<BTreeSet<String>> {
        let name =
            |o: &PartialObjectMeta<RuntimeClass>| o.metadata.name.clone().unwrap_or_default();
        match event {
            Event::Init => {
                self.pending.clear();
                None
            }
            Event::InitApply(o) => {
                self.pending.insert(name(&o));
                None
            }
            Event::InitDone => {
                self.current = Some(std::mem::take(&mut self.pending));
                self.current.clone()
            }
            // The watcher starts with a list: a change before it would be a kube-runtime change.
            Event::Apply(o) => {
                let current = self.current.as_mut()?;
                current.insert(name(&o)).then(|| current.clone())
            }
            Event::Delete(o) => {
                let current = self.current.as_mut()?;
                current.remove(&name(&o)).then(|| current.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests;
