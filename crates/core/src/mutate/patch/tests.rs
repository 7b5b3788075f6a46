use super::*;
use serde_json::json;

#[test]
fn keys_with_slashes_and_tildes_are_escaped() {
    let mut p = Patch::default();
    p.set_members(
        &["metadata", "annotations"],
        Parent::Present,
        [
            (
                "ci.skao.int/class".to_string(),
                None,
                "k8srunner".to_string(),
            ),
            ("a~b".to_string(), None, "x".to_string()),
        ],
    );
    let ops: Value = serde_json::from_slice(&p.to_json()).expect("json");
    assert_eq!(
        ops,
        json!([
            {"op": "add", "path": "/metadata/annotations/ci.skao.int~1class", "value": "k8srunner"},
            {"op": "add", "path": "/metadata/annotations/a~0b", "value": "x"}
        ])
    );
}

#[test]
fn a_missing_parent_is_added_whole_and_unchanged_members_are_skipped() {
    let mut p = Patch::default();
    p.set_members(
        &["spec", "nodeSelector"],
        Parent::Missing,
        [("a".to_string(), None, "1".to_string())],
    );
    p.set_members(
        &["metadata", "labels"],
        Parent::Present,
        [("same".to_string(), Some("v".to_string()), "v".to_string())],
    );
    let ops: Value = serde_json::from_slice(&p.to_json()).expect("json");
    assert_eq!(
        ops,
        json!([{"op": "add", "path": "/spec/nodeSelector", "value": {"a": "1"}}])
    );
}

#[test]
fn arrays_are_appended_to_or_created() {
    let mut p = Patch::default();
    p.append(
        &["spec", "tolerations"],
        Parent::Present,
        vec![json!({"key": "k"})],
    );
    p.append(
        &["spec", "volumes"],
        Parent::Missing,
        vec![json!({"name": "v"})],
    );
    p.append(&["spec", "x"], Parent::Missing, vec![]);
    p.append(
        &["spec", "volumes"],
        Parent::Missing,
        vec![json!({"name": "w"})],
    );
    let ops: Value = serde_json::from_slice(&p.to_json()).expect("json");
    assert_eq!(
        ops,
        json!([
            {"op": "add", "path": "/spec/tolerations/-", "value": {"key": "k"}},
            {"op": "add", "path": "/spec/volumes", "value": [{"name": "v"}, {"name": "w"}]}
        ])
    );
}
