use super::*;

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"n","operation":"CREATE","object":{"metadata":{"annotations":{"a":"b"}},"spec":{"containers":[{"name":"build"},{"name":"helper"}]}}}}"#;

#[test]
fn a_readable_review_parses() {
    let review = parse(REVIEW.as_bytes()).expect("readable");
    assert_eq!((review.uid(), review.namespace()), ("u", "n"));
}

#[test]
fn invalid_text_anywhere_in_the_body_is_not_json() {
    // In a field the webhook reads and in one it skips.
    let skipped = REVIEW.replacen(
        "\"kind\":\"AdmissionReview\"",
        "\"kind\":\"AdmissionReview\",\"x\":\"\u{0}\"",
        1,
    );
    let mut bytes = skipped.into_bytes();
    let at = bytes.iter().position(|b| *b == 0).expect("marker");
    bytes[at] = 0xff;
    assert!(matches!(parse(&bytes), Err(AdmissionError::NotJson(m)) if m.contains("not UTF-8")));
    // A lone surrogate escape is rejected where the webhook reads the string; in a
    // string it skips it is let through, as it changes nothing (the API server, which
    // writes \ufffd for invalid text, never sends one).
    let read = REVIEW.replacen("\"uid\":\"u\"", "\"uid\":\"\\ud800\"", 1);
    assert!(matches!(
        parse(read.as_bytes()),
        Err(AdmissionError::NotAReview(_) | AdmissionError::NotJson(_))
    ));
    let skipped = REVIEW.replacen("\"request\"", "\"x\":\"\\ud800\",\"request\"", 1);
    assert_eq!(parse(skipped.as_bytes()).expect("skipped field").uid(), "u");
}

#[test]
fn bodies_that_are_not_objects_are_not_reviews() {
    for body in ["[]", "[1,2]", "\"s\"", "null", "7"] {
        assert!(
            matches!(parse(body.as_bytes()), Err(AdmissionError::NotAReview(_))),
            "{body}"
        );
    }
    assert!(matches!(parse(b"  "), Err(AdmissionError::NotJson(_))));
    assert!(matches!(parse(b"{\"a\":"), Err(AdmissionError::NotJson(_))));
}

#[test]
fn a_request_or_kind_that_is_not_an_object_is_not_a_review() {
    // serde reads a struct from an array too: ["u"] would be a request with uid "u".
    for request in [r#"["u"]"#, r#""u""#, "7"] {
        let body = format!(
            r#"{{"apiVersion":"{API_VERSION}","kind":"AdmissionReview","request":{request}}}"#
        );
        assert!(
            matches!(parse(body.as_bytes()), Err(AdmissionError::NotAReview(_))),
            "{request}"
        );
    }
    let kind = REVIEW.replacen(
        r#"{"group":"","version":"v1","kind":"Pod"}"#,
        r#"["","v1","Pod"]"#,
        1,
    );
    assert!(matches!(
        parse(kind.as_bytes()),
        Err(AdmissionError::NotAReview(_))
    ));
}
