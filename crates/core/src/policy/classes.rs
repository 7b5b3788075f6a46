//! `classes`: one runner class, its match blocks (which trusted facts choose it), its
//! roles' resources and ceilings (`resources.rs`), its placement (the CI nodes' merged
//! with its own), its GPUs (`gpus.rs`) and the other devices it grants
//! (`extended_resources.rs`). The core chooses a class in `mutate/class.rs`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use super::extended_resources::RawExtendedResources;
use super::gpus::RawGpu;
use super::names::{is_dns_label, is_dns_subdomain, is_label_value};
use super::raw::{Ordered, RawEnforcement, RawToleration, S};
use super::resources::{RawLimitList, RawRoleResources};
use super::validate::{Validator, add_all, enforcement};
use super::{Enforcement, MatchRules, RunnerClass, Toleration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawClass {
    pub description: Option<String>,
    pub enforcement: Option<RawEnforcement>,
    #[serde(rename = "match", default)]
    pub match_rules: RawMatchBlocks,
    pub build: Option<RawRoleResources>,
    pub helper: Option<RawRoleResources>,
    pub services: Option<RawRoleResources>,
    /// Required, with `cpu` and `memory` keys: `null` means knowingly unlimited.
    pub max: Option<S<RawLimitList>>,
    #[serde(default)]
    pub node_selector: Ordered<S<String>, S<String>>,
    #[serde(default)]
    pub tolerations: Vec<S<RawToleration>>,
    pub gpu: Option<S<RawGpu>>,
    /// What `build` may keep besides cpu, memory, ephemeral-storage and the GPUs.
    #[serde(default)]
    pub extended_resources: RawExtendedResources,
}

/// `match:` as one block of rules, or a list of blocks (any block may match).
#[derive(Debug)]
pub enum RawMatchBlocks {
    One(RawMatch),
    Many(Vec<S<RawMatch>>),
}

impl Default for RawMatchBlocks {
    fn default() -> Self {
        RawMatchBlocks::One(RawMatch::default())
    }
}

impl<'de> Deserialize<'de> for RawMatchBlocks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BlocksVisitor;

        impl<'de> Visitor<'de> for BlocksVisitor {
            type Value = RawMatchBlocks;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a block of match rules, or a list of such blocks")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawMatch::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawMatchBlocks::One)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::new();
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(RawMatchBlocks::Many(blocks))
            }
        }

        d.deserialize_any(BlocksVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMatch {
    #[serde(default)]
    pub runner_names: Vec<S<String>>,
    #[serde(default)]
    pub runner_tokens: Vec<S<String>>,
    #[serde(default)]
    pub service_accounts: Vec<S<String>>,
    #[serde(default)]
    pub namespaces: Vec<S<String>>,
    #[serde(default)]
    pub pod_labels: Ordered<S<String>, S<String>>,
}

impl Validator<'_> {
    /// One class, on top of the CI nodes' selector and tolerations.
    pub(super) fn class(
        &mut self,
        name: S<String>,
        raw: RawClass,
        default_enforcement: Enforcement,
        ci_selector: &BTreeMap<String, String>,
        ci_tolerations: &[Toleration],
    ) -> RunnerClass {
        let n = name.value.clone();
        if n.is_empty() || !is_label_value(&n) {
            self.problem(
                &name,
                format!(
                    "classes: {n:?} is not a valid class name (it is used as a label value: letters, digits, -, _ and ., at most 63)"
                ),
            );
        }
        let max = self.ceilings(&name, raw.max.as_ref());
        let mut roles = [&raw.build, &raw.helper, &raw.services]
            .into_iter()
            .zip(["build", "helper", "services"])
            .map(|(role, role_name)| {
                role.as_ref()
                    .map(|r| self.role(&format!("classes.{n}.{role_name}"), r, &max))
                    .unwrap_or_default()
            });
        let (build, helper, services) = (
            roles.next().unwrap_or_default(),
            roles.next().unwrap_or_default(),
            roles.next().unwrap_or_default(),
        );

        let match_blocks = self.match_blocks(&n, &name, raw.match_rules);
        let mut node_selector = ci_selector.clone();
        node_selector
            .extend(self.node_selector(&format!("classes.{n}.nodeSelector"), &raw.node_selector));
        let mut tolerations = ci_tolerations.to_vec();
        add_all(
            &mut tolerations,
            self.tolerations(&format!("classes.{n}.tolerations"), &raw.tolerations),
        );
        let gpu = raw.gpu.as_ref().map(|g| {
            let (gpu, selector, gpu_tolerations) = self.gpu(&n, g);
            node_selector.extend(selector);
            add_all(&mut tolerations, gpu_tolerations);
            gpu
        });
        let extended_resources = self.extended_resources(
            &n,
            &raw.extended_resources,
            gpu.as_ref().map(|g| g.resource.as_str()),
        );
        RunnerClass {
            name: n,
            description: raw.description,
            enforcement: enforcement(raw.enforcement, default_enforcement),
            match_blocks,
            build,
            helper,
            services,
            max,
            node_selector,
            tolerations,
            gpu,
            extended_resources,
        }
    }

    /// The class's blocks: one (the single-block form, none when it is empty), or each of
    /// a list, where an empty block is a mistake (it would match nothing).
    fn match_blocks(
        &mut self,
        class: &str,
        name: &S<String>,
        raw: RawMatchBlocks,
    ) -> Vec<MatchRules> {
        let what = format!("classes.{class}.match");
        match raw {
            RawMatchBlocks::One(block) => {
                let rules = self.match_rules(&what, &block);
                if rules.is_empty() {
                    vec![]
                } else {
                    vec![rules]
                }
            }
            RawMatchBlocks::Many(blocks) => {
                if blocks.is_empty() {
                    self.problem(name, format!("{what}: an empty list matches nothing; give one or more blocks of rules, or leave match out"));
                }
                let mut out = Vec::new();
                for (i, block) in blocks.iter().enumerate() {
                    let rules = self.match_rules(&format!("{what}[{i}]"), &block.value);
                    if rules.is_empty() {
                        self.problem(block, format!("{what}[{i}]: an empty block matches nothing; give at least one rule (runnerNames, runnerTokens, serviceAccounts, namespaces, podLabels)"));
                    }
                    out.push(rules);
                }
                out
            }
        }
    }

    fn match_rules(&mut self, what: &str, raw: &RawMatch) -> MatchRules {
        let mut rules = MatchRules::default();
        for t in &raw.runner_tokens {
            match runner_token(&t.value) {
                Ok(token) => rules.runner_tokens.push(token),
                Err(message) => self.problem(t, format!("{what}.runnerTokens: {message}")),
            }
        }
        for r in &raw.runner_names {
            if !is_label_value(&r.value) || r.value.is_empty() {
                self.problem(
                    r,
                    format!(
                        "{what}.runnerNames: {:?} is not a valid runner name label value",
                        r.value
                    ),
                );
            }
            rules.runner_names.push(r.value.clone());
        }
        for sa in &raw.service_accounts {
            let parts = sa
                .value
                .strip_prefix("system:serviceaccount:")
                .and_then(|rest| rest.split_once(':'))
                .or_else(|| sa.value.split_once('/'));
            match parts {
                Some((ns, name)) if is_dns_label(ns) && is_dns_subdomain(name) => rules
                    .service_accounts
                    .push(format!("system:serviceaccount:{ns}:{name}")),
                _ => self.problem(
                    sa,
                    format!(
                        "{what}.serviceAccounts: {:?} is not a service account; write namespace/name, e.g. gitlab/gitlab-runner",
                        sa.value
                    ),
                ),
            }
        }
        for ns in &raw.namespaces {
            if !is_dns_label(&ns.value) {
                self.problem(
                    ns,
                    format!("{what}.namespaces: {:?} is not a namespace name", ns.value),
                );
            }
            rules.namespaces.push(ns.value.clone());
        }
        rules.pod_labels = self.node_selector(&format!("{what}.podLabels"), &raw.pod_labels);
        rules
    }
}

/// A runner's short token (GitLab Runner's `ShortDescription`), in the form job pod
/// names carry it: lower-cased, every `_` deleted (`dns.MakeRFC1123Compatible`), so the
/// runner's own spelling (its log's `runner=…`, the `manager.runner.gitlab.com/id-short`
/// label) and the pod name's both work.
///
/// Up to GitLab Runner 18.1 the short token is the first 8 characters of a legacy
/// token, 9 after a `glrt-`, `glrtr-` or `glcbt-` prefix, or 17 of a `GR1348941…` token;
/// from 18.2 it is 9 after stripping any of those prefixes (and a `t1_`-style partition).
/// The pod name is shorter by every `_` it deleted, so only the upper bound is checked.
/// A full token is a secret: it is refused without being repeated, so it does not end
/// up in logs.
fn runner_token(value: &str) -> Result<String, String> {
    let charset = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let full = ["glrt-", "glrtr-", "glcbt-"]
        .iter()
        .any(|p| value.starts_with(p))
        || value.len() > 17;
    if full || !charset {
        let shown = if full {
            "this value".to_string()
        } else {
            format!("{value:?}")
        };
        return Err(format!(
            "{shown} is not a runner short token; give the characters that follow runner- in the names of the runner's job pods (kubectl -n gitlab get pods), or its manager.runner.gitlab.com/id-short label, never the runner's full token"
        ));
    }
    let spelled = crate::mutate::pod_spelling(value);
    if spelled.trim_matches('-').is_empty() {
        return Err(format!(
            "{value:?} has no letter or digit; copy the token from a job pod name, runner-<token>-project-…"
        ));
    }
    Ok(spelled)
}

#[cfg(test)]
mod tests;
