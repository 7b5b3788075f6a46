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

fn names(changes: Changes) -> Vec<(String, bool)> {
    match changes {
        Changes::Some(list) => list
            .into_iter()
            .map(|c| (c.name, c.now.is_some()))
            .collect(),
        Changes::TooMany => panic!("too many"),
    }
}

#[test]
fn label_changes_and_deletions_are_logged_for_the_pod_watcher_and_new_namespaces_are_not() {
    let (reader, mut writer) = mirror();
    writer.apply(Event::Apply(namespace("ci", &[])));
    writer.apply(Event::Apply(namespace("ci", &[])));
    assert_eq!(names(reader.take_changes()), [], "new, then unchanged");
    writer.apply(Event::Apply(namespace(
        "ci",
        &[("ci.skao.int/pod-policy", "warn")],
    )));
    writer.apply(Event::Delete(namespace("ci", &[])));
    assert_eq!(
        names(reader.take_changes()),
        [("ci".to_string(), true), ("ci".to_string(), false)]
    );
    assert_eq!(names(reader.take_changes()), [], "taken once");
}

#[test]
fn a_relist_logs_what_changed_while_the_watch_was_away() {
    let (reader, mut writer) = mirror();
    writer.apply(Event::Init);
    writer.apply(Event::InitApply(namespace("same", &[("v", "1")])));
    writer.apply(Event::InitApply(namespace("relabelled", &[("v", "1")])));
    writer.apply(Event::InitApply(namespace("gone", &[])));
    writer.apply(Event::InitDone);
    assert_eq!(
        names(reader.take_changes()),
        [],
        "the first list is no change"
    );
    writer.apply(Event::Init);
    writer.apply(Event::InitApply(namespace("same", &[("v", "1")])));
    writer.apply(Event::InitApply(namespace("relabelled", &[("v", "2")])));
    writer.apply(Event::InitApply(namespace("new", &[])));
    writer.apply(Event::InitDone);
    let mut logged = names(reader.take_changes());
    logged.sort();
    assert_eq!(
        logged,
        [
            ("gone".to_string(), false),
            ("relabelled".to_string(), true)
        ]
    );
}

#[test]
fn a_log_nobody_takes_is_bounded() {
    let (reader, mut writer) = mirror();
    // The first is new, not a change: one more than the log holds.
    for i in 0..=MAX_CHANGES + 1 {
        writer.apply(Event::Apply(namespace("ci", &[("n", &i.to_string())])));
    }
    assert!(matches!(reader.take_changes(), Changes::TooMany));
    assert_eq!(names(reader.take_changes()), []);
}
