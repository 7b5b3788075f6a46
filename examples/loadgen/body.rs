//! The review sent on every request, and the check of every answer.
//!
//! The review file is compacted the way the API server sends it (no whitespace outside
//! strings, member order kept) unless `--as-is` is given. Each request carries its own
//! `request.uid` (`lg-<worker>-<sequence>`), spliced into a template, so a check that the
//! answer echoes it catches answers crossed between requests; the splice is one copy of
//! the body, about 2 µs for 20 KB.

use anyhow::{Context as _, bail};
use hyper::body::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The review with its `request.uid` value cut out.
#[derive(Debug, Clone)]
pub struct Template {
    /// Bytes up to and including the opening quote of the uid.
    head: Vec<u8>,
    /// Bytes from the closing quote of the uid on.
    tail: Vec<u8>,
    /// The uid in the file, sent as is when uids are not rewritten.
    pub original_uid: String,
    rewrite: bool,
}

#[derive(Deserialize)]
struct ReviewRaw<'a> {
    #[serde(borrow)]
    request: &'a RawValue,
}

#[derive(Deserialize)]
struct RequestRaw<'a> {
    #[serde(borrow)]
    uid: &'a RawValue,
}

impl Template {
    pub fn new(file: &[u8], as_is: bool, rewrite: bool) -> anyhow::Result<Template> {
        let body = if as_is { file.to_vec() } else { compact(file) };
        let review: ReviewRaw<'_> =
            serde_json::from_slice(&body).context("the review file is not an AdmissionReview")?;
        let request: RequestRaw<'_> = serde_json::from_str(review.request.get())
            .context("the review file has no request.uid")?;
        let uid_raw = request.uid.get();
        let original_uid: String =
            serde_json::from_str(uid_raw).context("request.uid is not a string")?;
        if uid_raw.len() != original_uid.len() + 2 {
            bail!("request.uid has escapes; use a plain uid");
        }
        // The raw value borrows from `body`: its address gives its offset.
        let start = uid_raw.as_ptr() as usize - body.as_ptr() as usize;
        let end = start + uid_raw.len();
        Ok(Template {
            head: body[..=start].to_vec(),
            tail: body[end - 1..].to_vec(),
            original_uid,
            rewrite,
        })
    }

    /// The uid request number `seq` of `worker` carries.
    pub fn uid(&self, worker: usize, seq: u64) -> String {
        if self.rewrite {
            format!("lg-{worker}-{seq}")
        } else {
            self.original_uid.clone()
        }
    }

    /// The body carrying `uid`.
    pub fn body(&self, uid: &str) -> Bytes {
        let mut out = Vec::with_capacity(self.head.len() + uid.len() + self.tail.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(uid.as_bytes());
        out.extend_from_slice(&self.tail);
        Bytes::from(out)
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.original_uid.len() + self.tail.len()
    }
}

/// Removes whitespace outside strings, keeping everything else byte for byte.
fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            out.push(b);
            in_string = b == b'"';
        }
    }
    out
}

#[derive(Deserialize)]
struct AnswerRaw<'a> {
    #[serde(borrow)]
    response: ResponseRaw<'a>,
}

#[derive(Deserialize)]
struct ResponseRaw<'a> {
    #[serde(borrow)]
    uid: std::borrow::Cow<'a, str>,
}

/// Checks that `answer` is an AdmissionReview response for `uid`.
pub fn check_answer(answer: &[u8], uid: &str) -> Result<(), String> {
    let parsed: AnswerRaw<'_> = serde_json::from_slice(answer)
        .map_err(|e| format!("the answer is not an AdmissionReview response: {e}"))?;
    if parsed.response.uid == uid {
        Ok(())
    } else {
        Err(format!(
            "response.uid is {:?}, expected {uid:?}",
            parsed.response.uid
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacting_keeps_whitespace_inside_strings() {
        let json = br#"{ "a" : "x y\" z" ,
            "b": [1, 2] }"#;
        assert_eq!(compact(json), br#"{"a":"x y\" z","b":[1,2]}"#.to_vec());
    }

    #[test]
    fn the_uid_is_spliced_into_the_body() {
        let file = br#"{"kind":"AdmissionReview","request":{"uid":"abc","object":{"uid":"x"}}}"#;
        let t = Template::new(file, false, true).expect("template");
        assert_eq!(t.original_uid, "abc");
        let body = t.body(&t.uid(3, 7));
        assert_eq!(
            &body[..],
            br#"{"kind":"AdmissionReview","request":{"uid":"lg-3-7","object":{"uid":"x"}}}"#
        );
        assert!(check_answer(br#"{"response":{"uid":"lg-3-7"}}"#, "lg-3-7").is_ok());
        assert!(check_answer(br#"{"response":{"uid":"lg-3-8"}}"#, "lg-3-7").is_err());
    }
}
