//! Tests of the scanner (scan.rs, scan_de.rs): what it accepts, and that the answers read
//! through it are the ordinary parse's.

use super::scan::Index;

const REVIEW: &str = include_str!("../../tests/fixtures/job-pod-review.json");

fn compact(json: &str) -> String {
    serde_json::to_string(&serde_json::from_str::<serde_json::Value>(json).expect("json"))
        .expect("json")
}

#[test]
fn compact_reviews_are_indexed() {
    let mut index = Index::default();
    assert!(index.build(&compact(REVIEW)).is_some());
    assert!(
        index
            .build(r#"{"a":[1,-2.5e3,true,false,null,"x\"y",{}],"b":{"c":[]}}"#)
            .is_some()
    );
}
