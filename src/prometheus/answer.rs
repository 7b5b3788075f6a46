//! Prometheus' JSON answer to an instant query, made into an [`Answer`] or an
//! [`Error`] that says what to fix.

use std::collections::BTreeMap;

use hyper::StatusCode;
use serde::Deserialize;

use super::{Answer, Error, Sample};

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorElement>),
    Matrix(serde::de::IgnoredAny),
    Scalar(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorElement {
    metric: BTreeMap<String, String>,
    /// `[unix time, "value"]`: Prometheus writes values as strings (`"NaN"`, `"+Inf"`).
    value: (f64, String),
}

/// An HTTP answer to a query made into samples or an [`Error`].
pub(super) fn decode(
    url: &str,
    status: StatusCode,
    body: &[u8],
    had_token: bool,
) -> Result<Answer, Error> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(Error::Refused {
            url: url.to_string(),
            status: status.as_u16(),
            hint: if had_token {
                "the bearer token was not accepted (--bearer-token-file, $PROMETHEUS_BEARER_TOKEN)"
            } else {
                "it wants credentials: pass --bearer-token-file or set $PROMETHEUS_BEARER_TOKEN"
            },
        });
    }
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(_) if !status.is_success() => {
            return Err(Error::NotPrometheus {
                url: url.to_string(),
                status: status.as_u16(),
                body: excerpt(body),
            });
        }
        Err(e) => {
            return Err(Error::BadAnswer {
                url: url.to_string(),
                reason: e.to_string(),
            });
        }
    };
    if envelope.status != "success" {
        return Err(Error::Query {
            url: url.to_string(),
            error_type: envelope.error_type.unwrap_or_else(|| status.to_string()),
            message: envelope.error.unwrap_or_default(),
        });
    }
    let samples = match envelope.data {
        Some(Data::Vector(elements)) => elements
            .into_iter()
            .filter_map(|e| {
                let value: f64 = e.value.1.parse().ok()?;
                value.is_finite().then_some(Sample {
                    labels: e.metric,
                    value,
                })
            })
            .collect(),
        Some(Data::Matrix(_) | Data::Scalar(_) | Data::String(_)) | None => {
            return Err(Error::BadAnswer {
                url: url.to_string(),
                reason: "the answer is not an instant vector".to_string(),
            });
        }
    };
    Ok(Answer {
        samples,
        warnings: envelope.warnings,
    })
}

/// The start of a non-JSON body, on one line, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text.chars().take(80).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!(" ({cut}{more})")
}
