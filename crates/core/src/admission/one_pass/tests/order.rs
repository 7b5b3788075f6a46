//! The single pass against the ordinary parse on compact reviews whose keys come in other
//! orders than the API server's, twice, or escaped: the answer must never change, only
//! whether the pod is read on the way. The one exception is a skip answered from the
//! fields before `object`: what follows them is not read, so a flaw there goes unseen.

use std::collections::BTreeMap;

use crate::admission::{parse, parse_with, respond};
use crate::mutate::NamespaceFacts;
use crate::policy::Policy;

const POD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/gitlab-runner-16.5-job-pod.json"
));

/// A compact JSON object of `fields`, in this order, each `(key, raw JSON value)`.
fn members(fields: &[(&str, &str)]) -> String {
    let members: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", members.join(","))
}

fn compact_pod() -> String {
    serde_json::to_string(&serde_json::from_str::<serde_json::Value>(POD).expect("pod"))
        .expect("json")
}

/// A review with the request's fields as given, wrapped the API server's way.
fn review(request: &[(&str, &str)]) -> String {
    members(&[
        ("kind", "\"AdmissionReview\""),
        ("apiVersion", "\"admission.k8s.io/v1\""),
        ("request", &members(request)),
    ])
}

const UID: (&str, &str) = ("uid", "\"u-1\"");
const KIND: (&str, &str) = ("kind", r#"{"group":"","version":"v1","kind":"Pod"}"#);
const NAMESPACE: (&str, &str) = ("namespace", "\"gitlab\"");
const CREATE: (&str, &str) = ("operation", "\"CREATE\"");

/// The answer (or error) with the namespace opted in or not, read either way.
fn outcome(body: &str, one_pass: bool, opted_in: bool) -> String {
    let labels = if opted_in {
        BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "enabled".to_string())])
    } else {
        BTreeMap::new()
    };
    let review = if one_pass {
        parse_with(body.as_bytes(), |_| opted_in)
    } else {
        parse(body.as_bytes())
    };
    let policy = Policy::embedded();
    match review.and_then(|r| respond(&policy, NamespaceFacts::Labels(&labels), &r)) {
        Ok(a) => String::from_utf8_lossy(&a.body).into_owned(),
        Err(e) => format!("error: {e}"),
    }
}

fn assert_same(body: &str) {
    for opted_in in [true, false] {
        assert_eq!(
            outcome(body, true, opted_in),
            outcome(body, false, opted_in),
            "{}",
            &body[..body.len().min(400)]
        );
    }
}

/// As [`assert_same`], except that where the namespace rules the review out, a body broken
/// after `object` may be answered from the fields before it: exactly as the same review
/// without the flaw is answered.
fn assert_same_or_answered_early(body: &str, without_the_flaw: &str) {
    assert_eq!(outcome(body, true, true), outcome(body, false, true));
    let (early, ordinary) = (outcome(body, true, false), outcome(body, false, false));
    if early != ordinary {
        assert!(ordinary.starts_with("error: "), "{ordinary}");
        assert_eq!(early, outcome(without_the_flaw, false, false));
    }
}

/// Whether `parse_with` read the pod on the way, told the namespace is opted in.
fn read_on_the_way(body: &str) -> bool {
    parse_with(body.as_bytes(), |_| true).is_ok_and(|r| r.request.pod.is_some())
}

#[test]
fn the_api_servers_order_reads_the_pod_on_the_way() {
    let pod = compact_pod();
    let body = review(&[UID, KIND, NAMESPACE, CREATE, ("object", &pod)]);
    assert!(read_on_the_way(&body));
    assert!(outcome(&body, true, true).contains("\"patchType\":\"JSONPatch\""));
    assert_same(&body);
}

#[test]
fn the_object_before_kind_namespace_or_operation_gets_the_same_answer() {
    let pod = compact_pod();
    let object = ("object", pod.as_str());
    for request in [
        vec![object, UID, KIND, NAMESPACE, CREATE],
        vec![UID, object, KIND, NAMESPACE, CREATE],
        vec![UID, KIND, object, NAMESPACE, CREATE],
        vec![UID, KIND, NAMESPACE, object, CREATE],
    ] {
        let body = review(&request);
        // The pod is only known to be wanted once all three have been read.
        assert!(!read_on_the_way(&body));
        assert!(outcome(&body, true, true).contains("\"patchType\":\"JSONPatch\""));
        assert_same(&body);
    }
    // The request before the review's own kind and apiVersion.
    let body = members(&[
        ("request", &members(&[UID, KIND, NAMESPACE, CREATE, object])),
        ("apiVersion", "\"admission.k8s.io/v1\""),
        ("kind", "\"AdmissionReview\""),
    ]);
    assert!(read_on_the_way(&body));
    assert_same(&body);
}

#[test]
fn duplicate_keys_get_the_same_answer() {
    let pod = compact_pod();
    let object = ("object", pod.as_str());
    for request in [
        vec![
            UID,
            KIND,
            NAMESPACE,
            ("namespace", "\"other\""),
            CREATE,
            object,
        ],
        vec![
            UID,
            KIND,
            NAMESPACE,
            CREATE,
            ("operation", "\"UPDATE\""),
            object,
        ],
        vec![UID, KIND, KIND, NAMESPACE, CREATE, object],
        vec![UID, UID, KIND, NAMESPACE, CREATE, object],
    ] {
        assert_same(&review(&request));
    }
    // Twice after the point where a skip is answered.
    let once = review(&[UID, KIND, NAMESPACE, CREATE, object]);
    for request in [
        vec![UID, KIND, NAMESPACE, CREATE, object, ("object", "{}")],
        vec![UID, KIND, NAMESPACE, CREATE, ("object", "{}"), object],
        vec![UID, KIND, NAMESPACE, CREATE, object, UID],
    ] {
        assert_same_or_answered_early(&review(&request), &once);
    }
    let twice = members(&[
        ("kind", "\"AdmissionReview\""),
        ("apiVersion", "\"admission.k8s.io/v1\""),
        ("request", &members(&[UID, KIND, NAMESPACE, CREATE, object])),
        (
            "request",
            &members(&[UID, KIND, ("namespace", "\"other\""), CREATE]),
        ),
    ]);
    assert_same_or_answered_early(&twice, &once);
}

/// The point of stopping early: a skip does not read the pod, so what follows the fields
/// before `object` is never looked at, broken or not.
#[test]
fn a_skip_is_answered_from_the_fields_before_the_object() {
    let pod = compact_pod();
    let update = ("operation", "\"UPDATE\"");
    for fields in [
        [UID, KIND, NAMESPACE, CREATE],
        [UID, KIND, NAMESPACE, update],
    ] {
        let whole = review(&[&fields[..], &[("object", pod.as_str())]].concat());
        let answered = outcome(&whole, false, false);
        assert!(
            answered.contains("\"uid\":\"u-1\",\"allowed\":true"),
            "{answered}"
        );
        assert!(!answered.contains("patch"), "{answered}");
        for broken in [
            // Cut in the middle of the pod; a pod that is not JSON; trailing bytes.
            whole[..whole.len() / 2].to_string(),
            whole.replacen("\"spec\":{", "\"spec\":{,", 1),
            format!("{whole} trailing"),
        ] {
            assert!(
                outcome(&broken, false, false).starts_with("error: the body is not valid JSON")
            );
            assert_eq!(outcome(&broken, true, false), answered);
            // Told the pod may be wanted, a CREATE is read on and refused; an UPDATE is
            // skipped whatever the namespace.
            let refused = parse_with(broken.as_bytes(), |_| true).map(|_| ());
            assert_eq!(refused.is_err(), fields[3] == CREATE);
        }
    }
}

/// Only what is read before `object` can end the reading: with `uid`, `kind` or
/// `operation` after it, the whole body is read, so a flaw anywhere is refused.
#[test]
fn a_skip_needs_uid_kind_and_operation_before_the_object() {
    let object = ("object", "{\"spec\":{}}");
    for request in [
        vec![KIND, NAMESPACE, CREATE, object, UID],
        vec![UID, NAMESPACE, CREATE, object, KIND],
        vec![UID, KIND, NAMESPACE, object, CREATE],
    ] {
        let body = review(&request);
        assert_same(&body);
        let uid_kept = outcome(&body, true, false);
        assert!(uid_kept.contains("\"uid\":\"u-1\""), "{uid_kept}");
        let broken = format!("{body} trailing");
        assert!(outcome(&broken, true, false).starts_with("error: the body is not valid JSON"));
    }
    // An answer that would be an error (a wrong apiVersion or kind, an empty uid) is not
    // given early: the whole body is read, and a flaw after the object is the error, as
    // in the ordinary parse.
    let skipped = [UID, KIND, NAMESPACE, ("operation", "\"UPDATE\""), object];
    let mut no_uid = skipped;
    no_uid[0] = ("uid", "\"\"");
    for body in [
        review(&skipped).replace("admission.k8s.io/v1", "admission.k8s.io/v2"),
        review(&skipped).replace("\"AdmissionReview\"", "\"AdmissionRevue\""),
        review(&no_uid),
    ] {
        let broken = format!("{body} trailing");
        assert!(outcome(&body, true, false).starts_with("error: "));
        assert_same(&broken);
        assert!(outcome(&broken, true, false).starts_with("error: the body is not valid JSON"));
    }
    // The envelope after the request: the answer echoes it, so it must be read too.
    let body = members(&[
        ("request", &members(&[UID, KIND, NAMESPACE, CREATE, object])),
        ("apiVersion", "\"admission.k8s.io/v1\""),
        ("kind", "\"AdmissionReview\""),
    ]);
    assert_same(&body);
    assert!(outcome(&format!("{body} x"), true, false).starts_with("error: "));
}

#[test]
fn escaped_keys_and_values_get_the_same_answer() {
    let pod = compact_pod();
    let object = ("object", pod.as_str());
    for request in [
        vec![UID, ("\\u006bind", KIND.1), NAMESPACE, CREATE, object],
        vec![UID, KIND, ("n\\u0061mespace", NAMESPACE.1), CREATE, object],
        vec![UID, KIND, NAMESPACE, ("operati\\u006fn", CREATE.1), object],
        vec![UID, KIND, NAMESPACE, CREATE, ("\\u006fbject", pod.as_str())],
        vec![UID, KIND, ("namespace", "\"git\\u006cab\""), CREATE, object],
        vec![
            UID,
            KIND,
            NAMESPACE,
            ("operation", "\"CR\\u0045ATE\""),
            object,
        ],
        vec![
            UID,
            ("kind", r#"{"group":"","version":"v1","\u006bind":"Pod"}"#),
            NAMESPACE,
            CREATE,
            object,
        ],
    ] {
        assert_same(&review(&request));
    }
    let body = members(&[
        ("\\u006bind", "\"AdmissionReview\""),
        ("apiVersion", "\"admission.k8s.io/v1\""),
        ("request", &members(&[UID, KIND, NAMESPACE, CREATE, object])),
    ]);
    assert_same(&body);
}

#[test]
fn missing_or_null_fields_get_the_same_answer() {
    let pod = compact_pod();
    let object = ("object", pod.as_str());
    for request in [
        vec![UID, KIND, NAMESPACE, object],
        vec![UID, KIND, CREATE, object],
        vec![UID, NAMESPACE, CREATE, object],
        vec![UID, ("kind", "null"), NAMESPACE, CREATE, object],
        vec![UID, KIND, ("namespace", "null"), CREATE, object],
        vec![UID, KIND, NAMESPACE, ("operation", "null"), object],
        vec![UID, KIND, NAMESPACE, CREATE, ("object", "null")],
        vec![
            UID,
            KIND,
            NAMESPACE,
            CREATE,
            ("subResource", "\"status\""),
            object,
        ],
        vec![KIND, NAMESPACE, CREATE, object],
    ] {
        assert_same(&review(&request));
    }
}
