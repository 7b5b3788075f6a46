//! A class's requests and limits per container role (`build`, `helper`, `services`)
//! and its ceilings (`max`): quantities parsed once, each request within its limit and
//! both within the class ceiling. Paired with `resources` in `mutate/`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::raw::{Present, S};
use super::validate::Validator;
use super::{Limit, ResourceName, RoleResources};
use crate::quantity::Quantity;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRoleResources {
    pub requests: Option<RawResourceList>,
    pub limits: Option<RawLimitList>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResourceList {
    pub cpu: Option<S<Quantity>>,
    pub memory: Option<S<Quantity>>,
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<S<Quantity>>,
}

/// Limits may be `null`, which means "this class wants no limit" and is not the same
/// as leaving the key out ("leave whatever the pod has").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitList {
    #[serde(default)]
    pub cpu: Present<S<Option<Quantity>>>,
    #[serde(default)]
    pub memory: Present<S<Option<Quantity>>>,
    #[serde(rename = "ephemeral-storage", default)]
    pub ephemeral_storage: Present<S<Option<Quantity>>>,
}

impl Validator<'_> {
    /// One role's requests and limits, checked against each other and the ceilings.
    pub(super) fn role(
        &mut self,
        what: &str,
        raw: &RawRoleResources,
        max: &BTreeMap<ResourceName, Quantity>,
    ) -> RoleResources {
        let requests = raw
            .requests
            .as_ref()
            .map(|r| self.resource_list(&format!("{what}.requests"), r, false))
            .unwrap_or_default();
        let mut limits = BTreeMap::new();
        let empty = RawLimitList::default();
        let raw_limits = raw.limits.as_ref().unwrap_or(&empty);
        for (name, field) in limit_fields(raw_limits) {
            let Some(spanned) = &field.0 else { continue };
            let limit = match spanned.value {
                None => {
                    if let Some(ceiling) = max.get(&name) {
                        self.problem(
                            spanned,
                            format!(
                                "{what}.limits.{name}: null (no limit) contradicts the class ceiling max.{name} {ceiling}: under a ceiling every container gets a limit at or under it; give a limit, or set max.{name}: null to leave {name} knowingly unlimited"
                            ),
                        );
                    }
                    Limit::Unlimited
                }
                Some(q) => {
                    self.check_quantity(&format!("{what}.limits.{name}"), spanned, q, true);
                    Limit::Set(q)
                }
            };
            limits.insert(name, limit);
        }
        // Cross-checks: request within its limit, both within the class ceiling.
        for (name, request) in &requests {
            if let Some(Limit::Set(limit)) = limits.get(name)
                && request > limit
            {
                let at = request_span(raw, *name);
                self.problem_at(at, format!("{what}.requests.{name}: {request} is above the limit {limit}; a request must not exceed its limit"));
            }
        }
        for (name, ceiling) in max {
            if let Some(request) = requests.get(name)
                && request > ceiling
            {
                self.problem_at(request_span(raw, *name), format!("{what}.requests.{name}: {request} is above the class ceiling max.{name} {ceiling}"));
            }
            if let Some(Limit::Set(limit)) = limits.get(name)
                && limit > ceiling
            {
                let at = limit_fields(raw_limits)
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, f)| {
                        f.0.as_ref()
                            .map(|s| (s.referenced.line(), s.referenced.column()))
                    });
                self.problem_at(at, format!("{what}.limits.{name}: {limit} is above the class ceiling max.{name} {ceiling}"));
            }
        }
        RoleResources { requests, limits }
    }

    /// The class ceilings: `max` must state `cpu` and `memory`, each a quantity or
    /// `null` (knowingly unlimited, left out of the map); `ephemeral-storage` is optional.
    pub(super) fn ceilings(
        &mut self,
        class: &S<String>,
        raw: Option<&S<RawLimitList>>,
    ) -> BTreeMap<ResourceName, Quantity> {
        let n = &class.value;
        let Some(raw) = raw else {
            self.problem(
                class,
                format!(
                    "classes.{n}.max: missing; every class states its ceiling for cpu and memory, e.g. max: {{ cpu: \"8\", memory: 16Gi }} (null leaves one knowingly unlimited)"
                ),
            );
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (name, field) in limit_fields(&raw.value) {
            match &field.0 {
                None if name != ResourceName::EphemeralStorage => self.problem(
                    raw,
                    format!(
                        "classes.{n}.max.{name}: missing; state the class ceiling for {name}: a quantity, or null to leave it knowingly unlimited"
                    ),
                ),
                None => {}
                Some(spanned) => {
                    if let Some(q) = spanned.value {
                        self.check_quantity(&format!("classes.{n}.max.{name}"), spanned, q, true);
                        out.insert(name, q);
                    }
                }
            }
        }
        out
    }

    fn resource_list(
        &mut self,
        what: &str,
        raw: &RawResourceList,
        positive: bool,
    ) -> BTreeMap<ResourceName, Quantity> {
        let mut out = BTreeMap::new();
        for (name, field) in resource_fields(raw) {
            if let Some(q) = field {
                self.check_quantity(&format!("{what}.{name}"), q, q.value, positive);
                out.insert(name, q.value);
            }
        }
        out
    }
}

fn resource_fields(r: &RawResourceList) -> [(ResourceName, Option<&S<Quantity>>); 3] {
    [
        (ResourceName::Cpu, r.cpu.as_ref()),
        (ResourceName::Memory, r.memory.as_ref()),
        (ResourceName::EphemeralStorage, r.ephemeral_storage.as_ref()),
    ]
}

fn limit_fields(r: &RawLimitList) -> [(ResourceName, &Present<S<Option<Quantity>>>); 3] {
    [
        (ResourceName::Cpu, &r.cpu),
        (ResourceName::Memory, &r.memory),
        (ResourceName::EphemeralStorage, &r.ephemeral_storage),
    ]
}

fn request_span(raw: &RawRoleResources, name: ResourceName) -> Option<(u64, u64)> {
    let requests = raw.requests.as_ref()?;
    resource_fields(requests)
        .into_iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, f)| f.map(|s| (s.referenced.line(), s.referenced.column())))
}

#[cfg(test)]
mod tests;
