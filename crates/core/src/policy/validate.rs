//! What every section's validation shares: the [`Validator`] that collects problems
//! with the line and column of the value at fault, and the checks more than one section
//! makes (label selectors, tolerations, quantities, runtime class names).
//!
//! Every problem is collected, so an operator fixing a policy sees all of them at once
//! rather than one per attempt. Each section validates itself in its own file with
//! `impl Validator` methods; `document.rs` calls them section by section.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::names::{is_dns_subdomain, is_label_value, is_qualified_name};
use super::raw::{Ordered, RawEnforcement, RawToleration};
use super::{Enforcement, PolicyError, Problem, Toleration, TolerationOperator};
use crate::quantity::Quantity;

/// Collects the problems of one policy file.
pub(super) struct Validator<'a> {
    origin: &'a str,
    problems: Vec<Problem>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(origin: &'a str) -> Self {
        Validator {
            origin,
            problems: Vec::new(),
        }
    }

    /// Where the policy came from, as problems name it.
    pub(super) fn origin(&self) -> &'a str {
        self.origin
    }

    /// `value` if no problem was found, else every problem, in the order found.
    pub(super) fn finish<T>(self, value: T) -> Result<T, PolicyError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(PolicyError::Invalid(self.problems))
        }
    }

    /// A problem at the value `at`.
    pub(super) fn problem<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: self.origin.to_string(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            message: message.into(),
        });
    }

    /// A problem at a (line, column) found by hand; `None` puts it at 0:0.
    pub(super) fn problem_at(&mut self, at: Option<(u64, u64)>, message: String) {
        let (line, column) = at.unwrap_or((0, 0));
        self.problems.push(Problem {
            origin: self.origin.to_string(),
            line,
            column,
            message,
        });
    }

    /// A quantity must be zero or more, or with `positive` greater than zero.
    pub(super) fn check_quantity<T>(
        &mut self,
        what: &str,
        at: &Spanned<T>,
        q: Quantity,
        positive: bool,
    ) {
        if q.is_negative() || (positive && q.is_zero()) {
            let need = if positive {
                "greater than zero"
            } else {
                "zero or more"
            };
            self.problem(at, format!("{what}: {q} must be {need}"));
        }
    }

    pub(super) fn runtime_class_name(&mut self, what: &str, r: &Spanned<String>) -> String {
        if !is_dns_subdomain(&r.value) {
            self.problem(
                r,
                format!(
                    "{what}.runtimeClassName: {:?} is not a valid RuntimeClass name",
                    r.value
                ),
            );
        }
        r.value.clone()
    }

    pub(super) fn node_selector(
        &mut self,
        what: &str,
        raw: &Ordered<Spanned<String>, Spanned<String>>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in &raw.0 {
            if !is_qualified_name(&k.value) {
                self.problem(k, format!("{what}: {:?} is not a valid label key", k.value));
            }
            if !is_label_value(&v.value) {
                self.problem(
                    v,
                    format!(
                        "{what}.{}: {:?} is not a valid label value",
                        k.value, v.value
                    ),
                );
            }
            out.insert(k.value.clone(), v.value.clone());
        }
        out
    }

    pub(super) fn tolerations(
        &mut self,
        what: &str,
        raw: &[Spanned<RawToleration>],
    ) -> Vec<Toleration> {
        let mut out = Vec::new();
        for (i, t) in raw.iter().enumerate() {
            match toleration(&t.value) {
                Ok(tol) => add_all(&mut out, [tol]),
                Err(message) => self.problem(t, format!("{what}[{i}]: {message}")),
            }
        }
        out
    }
}

/// Validates one toleration the way the API server does.
fn toleration(raw: &RawToleration) -> Result<Toleration, String> {
    let key = raw.key.clone().unwrap_or_default();
    let value = raw.value.clone().unwrap_or_default();
    let effect = raw.effect.clone().unwrap_or_default();
    let operator = match raw.operator.as_deref() {
        None | Some("") | Some("Equal") => TolerationOperator::Equal,
        Some("Exists") => TolerationOperator::Exists,
        Some(other) => {
            return Err(format!(
                "operator {other:?} is not valid; use Exists or Equal"
            ));
        }
    };
    if !key.is_empty() && !is_qualified_name(&key) {
        return Err(format!("key {key:?} is not a valid label key"));
    }
    if key.is_empty() && operator != TolerationOperator::Exists {
        return Err("an empty key needs operator Exists".to_string());
    }
    if operator == TolerationOperator::Exists && !value.is_empty() {
        return Err("operator Exists takes no value".to_string());
    }
    if !is_label_value(&value) {
        return Err(format!("value {value:?} is not a valid label value"));
    }
    if !matches!(
        effect.as_str(),
        "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute"
    ) {
        return Err(format!(
            "effect {effect:?} is not valid; use NoSchedule, PreferNoSchedule, NoExecute, or leave it out for all effects"
        ));
    }
    if raw.toleration_seconds.is_some() && effect != "NoExecute" {
        return Err("tolerationSeconds needs effect NoExecute".to_string());
    }
    Ok(Toleration {
        key,
        operator,
        value,
        effect,
        toleration_seconds: raw.toleration_seconds,
    })
}

/// Adds tolerations that are not already present: tolerations are a set.
pub(super) fn add_all(into: &mut Vec<Toleration>, new: impl IntoIterator<Item = Toleration>) {
    for t in new {
        if !into.contains(&t) {
            into.push(t);
        }
    }
}

/// A written `enforcement`, else the one inherited.
pub(super) fn enforcement(raw: Option<RawEnforcement>, inherited: Enforcement) -> Enforcement {
    match raw {
        Some(RawEnforcement::Enforce) => Enforcement::Enforce,
        Some(RawEnforcement::Warn) => Enforcement::Warn,
        None => inherited,
    }
}

#[cfg(test)]
mod tests;
