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
//!
//! A review the core will skip whatever its object holds (not a pod CREATE nor an UPDATE
//! of a pod subresource it reviews, or a namespace `wants_pod` rules out) is not read
//! past `object`: the visitor leaves what
//! it has read in a slot and stops the deserializer with an error ([`STOPPED`]). That
//! keeps a skip from paying for the 20 KB pod; the price is that a body broken after
//! that point is answered (allowed, unchanged) instead of refused.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{API_VERSION, KIND, ReviewIn};
use crate::mutate::view::{AdmissionRequest, Borrowed, GroupVersionKind, Object, Pod, UserInfo};
use crate::mutate::{self, Reviewed};

/// The review read in one pass, or `None`: parse it the ordinary way.
///
/// `wants_pod(namespace)` returning `false` is a promise that the core will find the
/// namespace out of scope: the review is then answered from the fields before `object`.
pub(super) fn review<F: FnMut(&str) -> bool>(text: &str, wants_pod: F) -> Option<ReviewIn<'_>> {
    // From text, not bytes: the body was checked as UTF-8 once, so serde_json need not
    // check each string it borrows (a few thousand short ones in a job pod).
    let mut de = serde_json::Deserializer::from_str(text);
    let mut stopped = None;
    let seed = ReviewSeed {
        wants_pod,
        stopped: &mut stopped,
    };
    match seed.deserialize(&mut de) {
        Ok(review) => {
            de.end().ok()?;
            Some(review)
        }
        // `Some` only when the visitor stopped on purpose, with the review it had read.
        Err(_) => stopped,
    }
}

/// The message of the error that stops the deserializer once the answer is known.
const STOPPED: &str = "answered before the object";

/// Stores a field's value, refusing a second one.
fn set<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom("duplicate field"));
    }
    *slot = Some(value);
    Ok(())
}

struct ReviewSeed<'s, 'de, F> {
    wants_pod: F,
    /// Where a visitor that stops early leaves the review it read.
    stopped: &'s mut Option<ReviewIn<'de>>,
}

impl<'de, F: FnMut(&str) -> bool> DeserializeSeed<'de> for ReviewSeed<'_, 'de, F> {
    type Value = ReviewIn<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(&str) -> bool> Visitor<'de> for ReviewSeed<'_, 'de, F> {
    type Value = ReviewIn<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionReview")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ReviewSeed {
            mut wants_pod,
            stopped,
        } = self;
        let mut stopped = Some(stopped);
        let (mut api_version, mut kind, mut request) = (None, None, None);
        // A key with escapes is an error here, so the ordinary parse reads it.
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "apiVersion" => set(&mut api_version, map.next_value::<Option<Borrowed>>()?)?,
                "kind" => set(&mut kind, map.next_value::<Option<Borrowed>>()?)?,
                "request" => {
                    // The request may end the reading only if a valid envelope came
                    // first, as the API server writes it: the answer echoes it, and a
                    // review stopped early must be one `finish` accepts, or its error
                    // would differ from the ordinary parse's.
                    let envelope = match (
                        api_version.as_ref().map(text_of),
                        kind.as_ref().map(text_of),
                    ) {
                        (Some(Some(api_version)), Some(kind))
                            if api_version == API_VERSION
                                && kind.as_deref().is_none_or(|kind| kind == KIND) =>
                        {
                            stopped.take().map(|slot| Envelope {
                                api_version: Some(api_version),
                                kind,
                                slot,
                            })
                        }
                        _ => None,
                    };
                    set(
                        &mut request,
                        map.next_value_seed(OptionalRequest {
                            wants_pod: &mut wants_pod,
                            envelope,
                        })?,
                    )?
                }
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

fn text_of<'de>(value: &Option<Borrowed<'de>>) -> Option<Cow<'de, str>> {
    value.as_ref().map(|s| s.0.clone())
}

/// The review's envelope, read before its request, and where to leave the review when
/// the request visitor stops early.
struct Envelope<'s, 'de> {
    api_version: Option<Cow<'de, str>>,
    kind: Option<Cow<'de, str>>,
    slot: &'s mut Option<ReviewIn<'de>>,
}

/// `request`: `null` or the request.
struct OptionalRequest<'f, 's, 'de, F> {
    wants_pod: &'f mut F,
    /// `None` when the request must be read to its end.
    envelope: Option<Envelope<'s, 'de>>,
}

impl<'de, F: FnMut(&str) -> bool> DeserializeSeed<'de> for OptionalRequest<'_, '_, 'de, F> {
    type Value = Option<AdmissionRequest<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, F: FnMut(&str) -> bool> Visitor<'de> for OptionalRequest<'_, '_, 'de, F> {
    type Value = Option<AdmissionRequest<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionRequest or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(RequestVisitor(self)).map(Some)
    }
}

struct RequestVisitor<'f, 's, 'de, F>(OptionalRequest<'f, 's, 'de, F>);

impl<'de, F: FnMut(&str) -> bool> Visitor<'de> for RequestVisitor<'_, '_, 'de, F> {
    type Value = AdmissionRequest<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionRequest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let RequestVisitor(OptionalRequest {
            wants_pod,
            mut envelope,
        }) = self;
        let mut read = RequestFields::default();
        let mut object: Option<Option<&'de RawValue>> = None;
        let mut old_object: Option<Option<&'de RawValue>> = None;
        let mut pod: Option<Option<Object<Pod<'de>>>> = None;
        // A key with escapes is an error here, so the ordinary parse reads it.
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "uid" => set(&mut read.uid, map.next_value()?)?,
                "kind" => set(&mut read.kind, map.next_value()?)?,
                "subResource" => set(&mut read.sub_resource, map.next_value()?)?,
                "name" => set(&mut read.name, map.next_value()?)?,
                "namespace" => set(&mut read.namespace, map.next_value()?)?,
                "operation" => set(&mut read.operation, map.next_value()?)?,
                "userInfo" => set(&mut read.user_info, map.next_value()?)?,
                "oldObject" => set(&mut old_object, map.next_value()?)?,
                "object" => {
                    if object.is_some() || pod.is_some() {
                        return Err(de::Error::custom("duplicate field"));
                    }
                    let reviewed = read.kind.as_ref().map_or(Reviewed::Other, |Object(k)| {
                        mutate::reviewed(
                            k,
                            read.operation.as_ref().map_or("", |op| &op.0),
                            read.sub_resource
                                .as_ref()
                                .and_then(|s| s.as_ref())
                                .map(|s| &*s.0),
                        )
                    });
                    let pod_create = reviewed == Reviewed::PodCreate;
                    let in_namespace = read
                        .namespace
                        .as_ref()
                        .map(|ns| wants_pod(ns.as_ref().map_or("", |ns| &ns.0)));
                    // Certain, not a guess, once `uid`, `kind` and `operation` are read:
                    // what is reviewed is final then (only a duplicate field, an error,
                    // could change it), and `false` from `wants_pod` is a promise. An
                    // UPDATE of a reviewed subresource is read to its end: its `object`
                    // and `oldObject` (which comes after) are both needed, raw.
                    let skipped = reviewed == Reviewed::Other || in_namespace == Some(false);
                    let answerable = read.uid.as_ref().is_some_and(|uid| !uid.0.is_empty())
                        && read.kind.is_some()
                        && read.operation.is_some();
                    if skipped
                        && answerable
                        && let Some(envelope) = envelope.take()
                    {
                        *envelope.slot = Some(ReviewIn {
                            api_version: envelope.api_version,
                            kind: envelope.kind,
                            request: Some(Object(read.into_request(None, None, None)?)),
                        });
                        return Err(de::Error::custom(STOPPED));
                    }
                    // Otherwise only a guess of what the core will do: it decides again
                    // on the whole request, so reading a pod it then skips is merely
                    // wasted.
                    if pod_create && in_namespace == Some(true) {
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
        read.into_request(
            object.flatten(),
            old_object.flatten(),
            pod.flatten().map(|Object(p)| p),
        )
    }
}

/// The request's fields read so far, each at most once.
#[derive(Default)]
struct RequestFields<'de> {
    uid: Option<Borrowed<'de>>,
    kind: Option<Object<GroupVersionKind<'de>>>,
    sub_resource: Option<Option<Borrowed<'de>>>,
    name: Option<Option<Borrowed<'de>>>,
    namespace: Option<Option<Borrowed<'de>>>,
    operation: Option<Borrowed<'de>>,
    user_info: Option<Object<UserInfo<'de>>>,
}

impl<'de> RequestFields<'de> {
    fn into_request<E: de::Error>(
        self,
        object: Option<&'de RawValue>,
        old_object: Option<&'de RawValue>,
        pod: Option<Pod<'de>>,
    ) -> Result<AdmissionRequest<'de>, E> {
        let uid = self.uid.ok_or_else(|| E::missing_field("uid"))?;
        Ok(AdmissionRequest {
            uid: uid.0,
            kind: self.kind.map(|Object(k)| k).unwrap_or_default(),
            sub_resource: self.sub_resource.flatten().map(|s| s.0),
            name: self.name.flatten().map(|s| s.0),
            namespace: self.namespace.flatten().map(|s| s.0),
            operation: self.operation.map(|s| s.0).unwrap_or_default(),
            user_info: self.user_info.map(|Object(u)| u).unwrap_or_default(),
            object,
            old_object,
            pod,
        })
    }
}

#[cfg(test)]
mod tests;
