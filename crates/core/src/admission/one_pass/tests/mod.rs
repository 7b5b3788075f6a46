mod order;

use std::collections::BTreeMap;

use crate::admission::{self, parse, parse_with, respond};
use crate::mutate::NamespaceFacts;
use crate::policy::Policy;

const REVIEW: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/job-pod-review.json"
));

/// The answer (or error) for `body`, as text, read the ordinary way or in one pass
/// told only that the pod may be wanted.
fn outcome(body: &[u8], one_pass: bool, opted_in: bool) -> String {
    outcome_told(body, one_pass.then_some(true), opted_in)
}

/// [`outcome`], the single pass told `wants_pod` (`None`: read the ordinary way).
fn outcome_told(body: &[u8], wants_pod: Option<bool>, opted_in: bool) -> String {
    let policy = Policy::embedded();
    let labels = if opted_in {
        BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "enabled".to_string())])
    } else {
        BTreeMap::new()
    };
    let review = match wants_pod {
        Some(wants_pod) => parse_with(body, |_| wants_pod),
        None => parse(body),
    };
    match review.and_then(|r| respond(&policy, NamespaceFacts::Labels(&labels), &r)) {
        Ok(a) => String::from_utf8_lossy(&a.body).into_owned(),
        Err(e) => format!("error: {e}"),
    }
}

fn variants() -> Vec<Vec<u8>> {
    let compact =
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(REVIEW).expect("fixture"))
            .expect("json");
    let pod_at = REVIEW.find("\"object\"").expect("object");
    vec![
        REVIEW.as_bytes().to_vec(),
        // Keys sorted: `object` comes before `operation`, so the pod stays raw.
        compact.into_bytes(),
        // An invalid pod: an error when it is needed, ignored when it is not.
        REVIEW
            .replacen("\"containers\": [", "\"containers\": 7, \"x\": [", 1)
            .into_bytes(),
        REVIEW.replacen("\"uid\"", "\"uid\": \"dup\", \"uid\"", 1).into_bytes(),
        REVIEW.replacen("\"uid\"", "\"u\\u0069d\"", 1).into_bytes(),
        REVIEW.replacen("\"operation\": \"CREATE\"", "\"operation\": 5", 1).into_bytes(),
        format!("{}\"object\": null, \"x{}", &REVIEW[..pod_at], &REVIEW[pod_at + 1..])
            .into_bytes(),
        format!("{}\"obj\"{}", &REVIEW[..pod_at], &REVIEW[pod_at + 8..]).into_bytes(),
        format!("{} trailing", REVIEW).into_bytes(),
        // Arrays where objects belong: serde would read a struct from one.
        REVIEW.replacen("\"spec\": {", "\"spec\": [], \"x\": {", 1).into_bytes(),
        REVIEW
            .replacen("\"userInfo\": {", "\"userInfo\": [\"u\"], \"x\": {", 1)
            .into_bytes(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":["","v1","Pod"],"namespace":"ci","operation":"CREATE","object":{}}}"#
            .to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":["u"]}"#
            .to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"ci","operation":"CREATE","object":[{},{"containers":[{"name":"build"}]}]}}"#
            .to_vec(),
        REVIEW.replacen("\"gitlab\"", "\"git\\u006cab\"", 1).into_bytes(),
        REVIEW.replacen("runner", "r\u{fc}nner", 1).into_bytes(),
        [&REVIEW.as_bytes()[..100], b"\xff", &REVIEW.as_bytes()[100..]].concat(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#
            .to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"ci","operation":"CREATE","object":null}}"#
            .to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"ci","operation":"CREATE","object":{}}}"#
            .to_vec(),
        br#"{"kind":"AdmissionReview"}"#.to_vec(),
        b"[1]".to_vec(),
        b"{".to_vec(),
    ]
}

#[test]
fn one_pass_answers_exactly_as_the_ordinary_parse() {
    for body in variants() {
        for opted_in in [true, false] {
            assert_eq!(
                outcome(&body, true, opted_in),
                outcome(&body, false, opted_in),
                "{}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
    }
}

/// Each fixture pod in the README's review, whose fields come in the API server's order.
#[test]
fn one_pass_answers_as_the_ordinary_parse_for_every_fixture_pod() {
    let start = REVIEW.find("\"object\": ").expect("object") + "\"object\": ".len();
    let end = REVIEW.find(",\n    \"oldObject\"").expect("oldObject");
    for pod in [
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/gitlab-runner-16.1-generate-name.json"
        )),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/gitlab-runner-16.5-job-pod.json"
        )),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/gitlab-runner-17.9-job-pod.json"
        )),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/gitlab-runner-17.9-no-resources-no-services.json"
        )),
    ] {
        let body = format!("{}{}{}", &REVIEW[..start], pod.trim(), &REVIEW[end..]);
        let review = parse_with(body.as_bytes(), |_| true).expect("readable");
        assert!(review.request.pod.is_some(), "read in one pass");
        for opted_in in [true, false] {
            assert_eq!(
                outcome(body.as_bytes(), true, opted_in),
                outcome(body.as_bytes(), false, opted_in)
            );
        }
    }
}

/// The review fuzzer's committed corpus and crash inputs (the differential fuzz
/// target `one_pass` checks the same on generated inputs).
#[test]
fn one_pass_answers_as_the_ordinary_parse_on_the_fuzz_inputs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut count = 0;
    for dir in ["corpus/review", "regressions/review"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let body = std::fs::read(entry.expect("entry").path()).expect("read");
            for opted_in in [true, false] {
                assert_eq!(
                    outcome(&body, true, opted_in),
                    outcome(&body, false, opted_in)
                );
            }
            // Told the truth, a skip may be answered before a flaw after `object`.
            let told = outcome_told(&body, Some(false), false);
            let ordinary = outcome(&body, false, false);
            if told != ordinary {
                assert!(ordinary.starts_with("error: "), "{ordinary}");
                assert!(told.contains("\"allowed\":true"), "{told}");
                assert!(!told.contains("\"patch\""), "{told}");
            }
            count += 1;
        }
    }
    assert!(count > 0, "no fuzz inputs found");
}

#[test]
fn the_pod_is_read_in_the_same_pass_only_when_wanted() {
    let body = REVIEW.as_bytes();
    let mut asked = Vec::new();
    let review = parse_with(body, |ns| {
        asked.push(ns.to_string());
        true
    })
    .expect("readable");
    assert_eq!(asked, ["gitlab"]);
    assert!(review.request.pod.is_some() && review.request.object.is_none());
    // Ruled out: answered from the fields before the object, which is not read.
    let review = parse_with(body, |_| false).expect("readable");
    assert!(review.request.pod.is_none() && review.request.object.is_none());
    let review = admission::parse(body).expect("readable");
    assert!(review.request.pod.is_none() && review.request.object.is_some());
}
