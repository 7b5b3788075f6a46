//! The in-memory copy of every namespace's labels, fed by watcher events.
//!
//! This is what `kube::runtime::reflector`'s store does, specialised: the store keeps
//! `Arc<PartialObjectMeta<Namespace>>`, so handing out a namespace's labels would mean
//! cloning its label map on every review. Here each namespace maps straight to an
//! `Arc` of its labels, looked up by `&str` without allocating, and a relist is swapped
//! in whole on `InitDone` exactly as the reflector does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;

use super::watcher::{Applied, Store};

/// One namespace's labels, shared with every review that reads them.
pub(super) type Labels = Arc<BTreeMap<String, String>>;
type Map = HashMap<String, Labels>;

/// The read side: cheap to clone, every lookup takes the lock for one hash probe.
#[derive(Clone, Debug, Default)]
pub(super) struct Reader(Arc<RwLock<Map>>);

impl Reader {
    pub(super) fn get(&self, namespace: &str) -> Option<Labels> {
        // A poisoned lock only means a writer panicked between two whole-map
        // operations; the map itself is still consistent.
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        map.get(namespace).cloned()
    }

    pub(super) fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The write side, owned by the watcher task.
#[derive(Debug)]
pub(super) struct Writer {
    shared: Reader,
    /// Namespaces seen since the last `Init`, swapped in on `InitDone` so that a relist
    /// never shows readers a half-listed cluster.
    relist: Map,
}

pub(super) fn mirror() -> (Reader, Writer) {
    let shared = Reader::default();
    let writer = Writer {
        shared: shared.clone(),
        relist: Map::new(),
    };
    (shared, writer)
}

impl Store<PartialObjectMeta<Namespace>> for Writer {
    fn apply(&mut self, event: Event<PartialObjectMeta<Namespace>>) -> Applied {
        match event {
            Event::Init => self.relist = Map::new(),
            Event::InitApply(object) => {
                if let Some((name, labels)) = name_and_labels(object) {
                    self.relist.insert(name, labels);
                }
            }
            Event::InitDone => {
                let listed = std::mem::take(&mut self.relist);
                let previous = std::mem::replace(&mut *self.write(), listed);
                // Freed after the lock is released: reviews never wait for a whole map
                // to be dropped (the lock is held for a pointer swap only).
                drop(previous);
                return Applied::Listed;
            }
            Event::Apply(object) => {
                if let Some((name, labels)) = name_and_labels(object) {
                    self.write().insert(name, labels);
                }
            }
            Event::Delete(object) => {
                if let Some(name) = object.metadata.name {
                    self.write().remove(&name);
                }
            }
        }
        Applied::Updated
    }

    fn held(&self) -> usize {
        self.shared.len()
    }

    fn before_first_list(&self) -> &'static str {
        "no labels known yet: each review asks the API server for its namespace, \
         and trusts the webhook configuration's namespaceSelector when that fails too"
    }
}

impl Writer {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        self.shared
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes the labels out of the event's object instead of cloning them.
fn name_and_labels(object: PartialObjectMeta<Namespace>) -> Option<(String, Labels)> {
    let metadata = object.metadata;
    let Some(name) = metadata.name else {
        tracing::debug!("ignoring a namespace event without metadata.name");
        return None;
    };
    Some((name, Arc::new(metadata.labels.unwrap_or_default())))
}

#[cfg(test)]
mod tests;
