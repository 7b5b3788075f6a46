//! The in-memory copy of every namespace's labels, fed by watcher events.
//!
//! This is what `kube::runtime::reflector`'s store does, specialised: the store keeps
//! `Arc<PartialObjectMeta<Namespace>>`, so handing out a namespace's labels would mean
//! cloning its label map on every review. Here each namespace maps straight to an
//! `Arc` of its labels, looked up by `&str` without allocating, and a relist is swapped
//! in whole on `InitDone` exactly as the reflector does.
//!
//! It also keeps a short log of the namespaces whose labels changed or that went away
//! (from watch events, and from comparing a relist with what it replaces, so an
//! outage loses none): the job-pod watcher judges pods again when a namespace opts in,
//! changes mode or opts out ([`Reader::take_changes`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;

use super::watcher::{Applied, Store};

/// One namespace's labels, shared with every review that reads them.
pub(super) type Labels = Arc<BTreeMap<String, String>>;
type Map = HashMap<String, Labels>;

/// The read side: cheap to clone, every lookup takes the lock for one hash probe.
#[derive(Clone, Debug, Default)]
pub(super) struct Reader {
    map: Arc<RwLock<Map>>,
    changes: Arc<Mutex<Changes>>,
}

/// A namespace whose labels changed, or that went away (`now: None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Change {
    pub(super) name: String,
    pub(super) before: Labels,
    pub(super) now: Option<Labels>,
}

/// What [`Reader::take_changes`] hands over.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Changes {
    /// Each change since the last take, in order.
    Some(Vec<Change>),
    /// More than [`MAX_CHANGES`] piled up: take every namespace as changed.
    TooMany,
}

impl Default for Changes {
    fn default() -> Self {
        Changes::Some(Vec::new())
    }
}

/// Changes kept for the reader; past this (nobody takes them, or a burst), the log
/// says "too many" instead of growing.
pub(super) const MAX_CHANGES: usize = 1024;

impl Reader {
    pub(super) fn get(&self, namespace: &str) -> Option<Labels> {
        // A poisoned lock only means a writer panicked between two whole-map
        // operations; the map itself is still consistent.
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(namespace).cloned()
    }

    pub(super) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The namespaces whose labels changed, or that went away, since the last call.
    /// A namespace that appears is not a change: nothing can have been judged in it.
    pub(super) fn take_changes(&self) -> Changes {
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *changes)
    }

    fn record(&self, change: Change) {
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Changes::Some(list) = &mut *changes {
            if list.len() < MAX_CHANGES {
                list.push(change);
            } else {
                *changes = Changes::TooMany;
            }
        }
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
                // What changed while the watch was away (an outage, an expired watch).
                let changes: Vec<Change> = {
                    let now = self
                        .shared
                        .map
                        .read()
                        .unwrap_or_else(PoisonError::into_inner);
                    previous
                        .iter()
                        .filter(|(name, before)| now.get(*name) != Some(*before))
                        .map(|(name, before)| Change {
                            name: name.clone(),
                            before: before.clone(),
                            now: now.get(name).cloned(),
                        })
                        .collect()
                };
                for change in changes {
                    self.shared.record(change);
                }
                // Freed after the lock is released: reviews never wait for a whole map
                // to be dropped (the lock is held for a pointer swap only).
                drop(previous);
                return Applied::Listed;
            }
            Event::Apply(object) => {
                if let Some((name, labels)) = name_and_labels(object) {
                    let before = self.write().insert(name.clone(), labels.clone());
                    if let Some(before) = before.filter(|before| *before != labels) {
                        self.shared.record(Change {
                            name,
                            before,
                            now: Some(labels),
                        });
                    }
                }
            }
            Event::Delete(object) => {
                if let Some(name) = object.metadata.name {
                    let before = self.write().remove(&name);
                    if let Some(before) = before {
                        self.shared.record(Change {
                            name,
                            before,
                            now: None,
                        });
                    }
                }
            }
        }
        Applied::Updated
    }

    fn held(&self) -> usize {
        self.shared.len()
    }

    fn access(&self) -> super::access::Access {
        super::access::NAMESPACES
    }

    fn before_first_list(&self) -> &'static str {
        "no labels known yet: each review asks the API server for its namespace, \
         and trusts the webhook configuration's namespaceSelector when that fails too"
    }
}

impl Writer {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        self.shared
            .map
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
