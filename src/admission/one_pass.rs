//! The single pass of [`super::parse_with`]: the review's envelope and, when it will be
//! needed, its pod, read by one serde_json deserializer.
//!
//! The derived `Deserialize` of the envelope cannot decide, half-way through a request,
//! whether to read `object` as a pod or keep it raw; these hand-written visitors can: by
//! the time the API server's field order reaches `object`, `kind`, `operation` and
//! `namespace` have been read. They only need to be right when they succeed: any error
//! (a duplicate or missing field, a value of the wrong type, an invalid pod) makes
//! [`review`] return `None` and the caller parse the body the ordinary way, which then
//! words the error exactly as before.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::ReviewIn;
use crate::mutate;
use crate::mutate::view::{AdmissionRequest, Borrowed, GroupVersionKind, Object, Pod, UserInfo};

/// The review read in one pass, or `None`: parse it the ordinary way.
pub(super) fn review<F: FnMut(&str) -> bool>(text: &str, wants_pod: F) -> Option<ReviewIn<'_>> {
    // From text, not bytes: the body was checked as UTF-8 once, so serde_json need not
    // check each string it borrows (a few thousand short ones in a job pod).
    let mut de = serde_json::Deserializer::from_str(text);
    let review = ReviewSeed(wants_pod).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(review)
}

/// Stores a field's value, refusing a second one.
fn set<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom("duplicate field"));
    }
    *slot = Some(value);
    Ok(())
}

struct ReviewSeed<F>(F);

impl<'de, F: FnMut(&str) -> bool> DeserializeSeed<'de> for ReviewSeed<F> {
    type Value = ReviewIn<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(&str) -> bool> Visitor<'de> for ReviewSeed<F> {
    type Value = ReviewIn<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionReview")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut wants_pod = self.0;
        let (mut api_version, mut kind, mut request) = (None, None, None);
        // A key with escapes is an error here, so the ordinary parse reads it.
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "apiVersion" => set(&mut api_version, map.next_value::<Option<Borrowed>>()?)?,
                "kind" => set(&mut kind, map.next_value::<Option<Borrowed>>()?)?,
                "request" => set(
                    &mut request,
                    map.next_value_seed(OptionalRequest(&mut wants_pod))?,
                )?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ReviewIn {
            api_version: api_version.flatten().map(|s| s.0),
            kind: kind.flatten().map(|s| s.0),
            request: request.flatten().map(Object),
        })
    }
}

/// `request`: `null` or the request.
struct OptionalRequest<'f, F>(&'f mut F);

impl<'de, F: FnMut(&str) -> bool> DeserializeSeed<'de> for OptionalRequest<'_, F> {
    type Value = Option<AdmissionRequest<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, F: FnMut(&str) -> bool> Visitor<'de> for OptionalRequest<'_, F> {
    type Value = Option<AdmissionRequest<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionRequest or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(RequestVisitor(self.0)).map(Some)
    }
}

struct RequestVisitor<'f, F>(&'f mut F);

impl<'de, F: FnMut(&str) -> bool> Visitor<'de> for RequestVisitor<'_, F> {
    type Value = AdmissionRequest<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionRequest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut uid: Option<Borrowed<'de>> = None;
        let mut kind: Option<Object<GroupVersionKind<'de>>> = None;
        let mut sub_resource: Option<Option<Borrowed<'de>>> = None;
        let mut name: Option<Option<Borrowed<'de>>> = None;
        let mut namespace: Option<Option<Borrowed<'de>>> = None;
        let mut operation: Option<Borrowed<'de>> = None;
        let mut user_info: Option<Object<UserInfo<'de>>> = None;
        let mut object: Option<Option<&'de RawValue>> = None;
        let mut pod: Option<Option<Object<Pod<'de>>>> = None;
        // A key with escapes is an error here, so the ordinary parse reads it.
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "uid" => set(&mut uid, map.next_value()?)?,
                "kind" => set(&mut kind, map.next_value()?)?,
                "subResource" => set(&mut sub_resource, map.next_value()?)?,
                "name" => set(&mut name, map.next_value()?)?,
                "namespace" => set(&mut namespace, map.next_value()?)?,
                "operation" => set(&mut operation, map.next_value()?)?,
                "userInfo" => set(&mut user_info, map.next_value()?)?,
                "object" => {
                    if object.is_some() || pod.is_some() {
                        return Err(de::Error::custom("duplicate field"));
                    }
                    // Only a guess of what the core will do: it decides again on the
                    // whole request, so reading a pod it then skips is merely wasted.
                    let pod_create = kind.as_ref().is_some_and(|Object(k)| {
                        mutate::is_pod_create(
                            k,
                            operation.as_ref().map_or("", |op| &op.0),
                            sub_resource
                                .as_ref()
                                .and_then(|s| s.as_ref())
                                .map(|s| &*s.0),
                        )
                    });
                    let in_namespace = namespace
                        .as_ref()
                        .is_some_and(|ns| (self.0)(ns.as_ref().map_or("", |ns| &ns.0)));
                    if pod_create && in_namespace {
                        pod = Some(map.next_value()?);
                    } else {
                        object = Some(map.next_value()?);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let uid = uid.ok_or_else(|| de::Error::missing_field("uid"))?;
        Ok(AdmissionRequest {
            uid: uid.0,
            kind: kind.map(|Object(k)| k).unwrap_or_default(),
            sub_resource: sub_resource.flatten().map(|s| s.0),
            name: name.flatten().map(|s| s.0),
            namespace: namespace.flatten().map(|s| s.0),
            operation: operation.map(|s| s.0).unwrap_or_default(),
            user_info: user_info.map(|Object(u)| u).unwrap_or_default(),
            object: object.flatten(),
            pod: pod.flatten().map(|Object(p)| p),
        })
    }
}

#[cfg(test)]
#[path = "one_pass_order_tests.rs"]
mod order_tests;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::admission::{self, answer, parse, parse_with};
    use crate::mutate::NamespaceFacts;
    use crate::policy::Policy;

    const REVIEW: &str = include_str!("../../tests/fixtures/job-pod-review.json");

    /// The answer (or error) for `body`, as text, read the ordinary way or in one pass.
    fn outcome(body: &[u8], one_pass: bool, opted_in: bool) -> String {
        let policy = Policy::embedded();
        let labels = if opted_in {
            BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "enabled".to_string())])
        } else {
            BTreeMap::new()
        };
        let review = if one_pass {
            parse_with(body, |_| true)
        } else {
            parse(body)
        };
        match review.and_then(|r| answer(&policy, NamespaceFacts::Labels(&labels), &r)) {
            Ok(a) => String::from_utf8_lossy(&a.body).into_owned(),
            Err(e) => format!("error: {e}"),
        }
    }

    fn variants() -> Vec<Vec<u8>> {
        let compact = serde_json::to_string(
            &serde_json::from_str::<serde_json::Value>(REVIEW).expect("fixture"),
        )
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
            include_str!("../../tests/fixtures/gitlab-runner-16.1-generate-name.json"),
            include_str!("../../tests/fixtures/gitlab-runner-16.5-job-pod.json"),
            include_str!("../../tests/fixtures/gitlab-runner-17.9-job-pod.json"),
            include_str!("../../tests/fixtures/gitlab-runner-17.9-no-resources-no-services.json"),
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
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
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
        let review = parse_with(body, |_| false).expect("readable");
        assert!(review.request.pod.is_none() && review.request.object.is_some());
        let review = admission::parse(body).expect("readable");
        assert!(review.request.pod.is_none() && review.request.object.is_some());
    }
}
