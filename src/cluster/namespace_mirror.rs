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
mod tests {
    use super::*;
    use kube::core::ObjectMeta;

    fn namespace(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: (!labels.is_empty()).then(|| {
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                }),
                ..ObjectMeta::default()
            },
            ..PartialObjectMeta::default()
        }
    }

    fn label(reader: &Reader, namespace: &str, key: &str) -> Option<String> {
        reader.get(namespace)?.get(key).cloned()
    }

    #[test]
    fn listed_namespaces_appear_only_when_the_list_is_complete() {
        let (reader, mut writer) = mirror();
        assert_eq!(writer.apply(Event::Init), Applied::Updated);
        writer.apply(Event::InitApply(namespace("ci", &[("team", "a")])));
        assert!(reader.get("ci").is_none(), "half a list is never visible");
        assert_eq!(writer.apply(Event::InitDone), Applied::Listed);
        assert_eq!(label(&reader, "ci", "team").as_deref(), Some("a"));
    }

    #[test]
    fn a_relist_replaces_the_old_contents_atomically() {
        let (reader, mut writer) = mirror();
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(namespace("gone", &[])));
        writer.apply(Event::InitApply(namespace("kept", &[("v", "1")])));
        writer.apply(Event::InitDone);

        writer.apply(Event::Init);
        writer.apply(Event::InitApply(namespace("kept", &[("v", "2")])));
        assert!(
            reader.get("gone").is_some(),
            "old contents serve during a relist"
        );
        writer.apply(Event::InitDone);
        assert!(
            reader.get("gone").is_none(),
            "missing from the relist means deleted"
        );
        assert_eq!(label(&reader, "kept", "v").as_deref(), Some("2"));
        assert_eq!(reader.len(), 1);
    }

    #[test]
    fn applied_and_deleted_namespaces_update_the_mirror_at_once() {
        let (reader, mut writer) = mirror();
        writer.apply(Event::Apply(namespace("ci", &[("v", "1")])));
        assert_eq!(label(&reader, "ci", "v").as_deref(), Some("1"));
        writer.apply(Event::Apply(namespace("ci", &[("v", "2")])));
        assert_eq!(label(&reader, "ci", "v").as_deref(), Some("2"));
        writer.apply(Event::Delete(namespace("ci", &[])));
        assert!(reader.get("ci").is_none());
    }

    #[test]
    fn a_namespace_without_labels_is_known_with_an_empty_map() {
        let (reader, mut writer) = mirror();
        writer.apply(Event::Apply(namespace("bare", &[])));
        assert_eq!(reader.get("bare").map(|labels| labels.len()), Some(0));
    }

    #[test]
    fn lookups_share_the_stored_map_instead_of_copying_it() {
        let (reader, mut writer) = mirror();
        writer.apply(Event::Apply(namespace("ci", &[("v", "1")])));
        let (first, second) = (reader.get("ci"), reader.get("ci"));
        assert!(matches!((first, second), (Some(a), Some(b)) if Arc::ptr_eq(&a, &b)));
    }

    #[test]
    fn an_event_without_a_name_is_ignored() {
        let (reader, mut writer) = mirror();
        let mut nameless = namespace("x", &[]);
        nameless.metadata.name = None;
        writer.apply(Event::Apply(nameless));
        assert_eq!(reader.len(), 0);
    }
}
