use super::*;
use kube::core::ObjectMeta;

fn object(name: &str) -> PartialObjectMeta<RuntimeClass> {
    PartialObjectMeta {
        types: None,
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        _phantom: std::marker::PhantomData,
    }
}

fn set(names: &[&str]) -> Option<BTreeSet<String>> {
    Some(names.iter().map(|n| (*n).to_string()).collect())
}

#[test]
fn a_list_is_seen_only_when_complete_and_replaces_the_old_one() {
    let mut mirror = Mirror::default();
    assert_eq!(mirror.apply(Event::Init), None);
    assert_eq!(mirror.apply(Event::InitApply(object("nvidia"))), None);
    assert_eq!(mirror.apply(Event::InitDone), set(&["nvidia"]));
    // A relist after the watch expired: the old names stay until it is complete.
    assert_eq!(mirror.apply(Event::Init), None);
    assert_eq!(mirror.current, set(&["nvidia"]));
    assert_eq!(mirror.apply(Event::InitApply(object("kata"))), None);
    assert_eq!(mirror.apply(Event::InitDone), set(&["kata"]));
}

#[test]
fn an_empty_list_is_known_and_empty() {
    let mut mirror = Mirror::default();
    mirror.apply(Event::Init);
    assert_eq!(mirror.apply(Event::InitDone), set(&[]));
}

#[test]
fn added_and_deleted_classes_change_the_set() {
    let mut mirror = Mirror::default();
    mirror.apply(Event::Init);
    mirror.apply(Event::InitDone);
    assert_eq!(
        mirror.apply(Event::Apply(object("nvidia"))),
        set(&["nvidia"])
    );
    // A modification of a known class changes nothing reviews see.
    assert_eq!(mirror.apply(Event::Apply(object("nvidia"))), None);
    assert_eq!(mirror.apply(Event::Delete(object("nvidia"))), set(&[]));
    assert_eq!(mirror.apply(Event::Delete(object("nvidia"))), None);
}

#[test]
fn without_a_watch_the_names_are_unknown() {
    let classes = RuntimeClasses::unknown();
    assert!(classes.current().is_none());
    assert!(matches!(
        RuntimeClasses::facts(classes.current().as_ref()),
        RuntimeClassFacts::Unknown
    ));
    let fixed = RuntimeClasses::fixed(["nvidia"]);
    let current = fixed.current();
    assert!(matches!(
        RuntimeClasses::facts(current.as_ref()),
        RuntimeClassFacts::Known(names) if names.contains("nvidia")
    ));
}
