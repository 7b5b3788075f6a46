//! The policy file as a whole: the top-level `RawPolicy` that names every section,
//! reading the YAML (its errors located like every other problem), and the one
//! conversion into a validated [`Policy`], section by section.
//!
//! This is the only file that knows every section; each section reads and validates
//! itself in its own file (`job_pods.rs`, `docker.rs`, `classes.rs`, …).

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::classes::RawClass;
use super::docker::RawDocker;
use super::gpu_workloads::{GPU_WORKLOADS_CLASS, RawGpuWorkloads};
use super::job_pods::RawJobPods;
use super::limits_env::RawLimitsEnv;
use super::names::is_dns_subdomain;
use super::raw::{Ordered, RawEnforcement, RawToleration, S};
use super::validate::{Validator, enforcement};
use super::{
    DEFAULT_POLICY_YAML, Enforcement, EphemeralContainers, Keys, OnExceed, Policy, PolicyError,
    Problem, RunnerClass,
};

const DEFAULT_PREFIX: &str = "ci.skao.int";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPolicy {
    pub prefix: Option<S<String>>,
    pub default_class: S<String>,
    pub job_pods: Option<RawJobPods>,
    pub docker: Option<RawDocker>,
    pub overrides: Option<RawOverrides>,
    pub enforcement: Option<RawEnforcement>,
    pub ci_nodes: Option<RawScheduling>,
    pub classes: S<Ordered<S<String>, RawClass>>,
    pub gpu_workloads: Option<S<RawGpuWorkloads>>,
    pub limits_env: Option<RawLimitsEnv>,
    pub ephemeral_containers: Option<EphemeralContainers>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOverrides {
    pub on_exceed: Option<RawOnExceed>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawOnExceed {
    Clamp,
    Deny,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawScheduling {
    #[serde(default)]
    pub node_selector: Ordered<S<String>, S<String>>,
    #[serde(default)]
    pub tolerations: Vec<S<RawToleration>>,
}

impl Policy {
    /// Parses and validates policy text. `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy =
            serde_saphyr::from_str(text).map_err(|e| yaml_error(&e, text, origin))?;
        let mut v = Validator::new(origin);
        let mut policy = v.policy(raw);
        policy.hash = short_hash(text.as_bytes());
        v.finish(policy)
    }

    /// The embedded default policy.
    pub fn embedded() -> Policy {
        // The embedded file is checked by a unit test, so this cannot fail in a build
        // that passed its tests; a failure would be a build defect, hence the expect.
        Policy::parse(DEFAULT_POLICY_YAML, "<embedded default policy>")
            .expect("the embedded default policy is valid")
    }
}

/// Turns a YAML/serde error into a located problem. The library appends
/// " at line L, column C" to its message; the location goes in front instead.
///
/// Reading stops at the first such error (serde-saphyr reports one per parse: a YAML
/// syntax error leaves nothing to read on, and serde gives up at the first unknown key,
/// wrong type or duplicate key), so it is one problem; the checks of `Validator` below,
/// which run on a file that parsed, report all theirs at once.
fn yaml_error(e: &serde_saphyr::Error, text: &str, origin: &str) -> PolicyError {
    let mut options = serde_saphyr::RenderOptions::default();
    options.snippets = serde_saphyr::SnippetMode::Off;
    let rendered = e.render_with_options(options);
    let (mut line, mut column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let mut message = match rendered.rfind(" at line ") {
        Some(i) if line > 0 => rendered[..i].to_string(),
        _ => rendered,
    };
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = e.without_snippet() {
        // The library's own text ends in a hint about its Options, meant for programmers.
        let key = key.as_deref().map_or(String::new(), |k| format!(" `{k}`"));
        message = format!(
            "duplicate key{key}: a key may appear once in a mapping; remove or merge the repeated one"
        );
    } else if message.starts_with("tab") || message.contains(" tab") {
        // The scanner can report a tab at the end of the line before it (a tab that
        // starts a line ends the plain scalar on the previous one): point at the tab.
        if let Some((tab_line, tab_column)) = first_tab_from_line(text, line) {
            (line, column) = (tab_line, tab_column);
        }
        message = format!(
            "a tab character: YAML indents with spaces only; replace it with spaces ({message})"
        );
    }
    PolicyError::Invalid(vec![Problem {
        origin: origin.to_string(),
        line,
        column,
        message,
    }])
}

/// Line and column (both from 1) of the first tab at or after the start of `line`.
fn first_tab_from_line(text: &str, line: u64) -> Option<(u64, u64)> {
    let first = usize::try_from(line.max(1) - 1).ok()?;
    text.split('\n')
        .enumerate()
        .skip(first)
        .find_map(|(index, content)| {
            let column = content.chars().position(|c| c == '\t')?;
            Some((index as u64 + 1, column as u64 + 1))
        })
}

impl Validator<'_> {
    /// Every section, then what holds across them: the name gpuWorkloads takes, the
    /// default class.
    fn policy(&mut self, raw: RawPolicy) -> Policy {
        let prefix = match &raw.prefix {
            Some(p) => {
                if !is_dns_subdomain(&p.value) {
                    self.problem(
                        p,
                        format!(
                            "prefix: {:?} is not a DNS subdomain (lower-case, like ci.example.org)",
                            p.value
                        ),
                    );
                }
                p.value.clone()
            }
            None => DEFAULT_PREFIX.to_string(),
        };
        let job_pods = self.job_pods(raw.job_pods);
        let docker = self.docker(raw.docker);
        let on_exceed = match raw.overrides.and_then(|o| o.on_exceed) {
            Some(RawOnExceed::Deny) => OnExceed::Deny,
            Some(RawOnExceed::Clamp) | None => OnExceed::Clamp,
        };
        let enforcement = enforcement(raw.enforcement, Enforcement::Enforce);
        let ci_nodes = raw.ci_nodes.unwrap_or_default();
        let ci_selector = self.node_selector("ciNodes.nodeSelector", &ci_nodes.node_selector);
        let ci_tolerations = self.tolerations("ciNodes.tolerations", &ci_nodes.tolerations);

        if raw.classes.value.0.is_empty() {
            self.problem(
                &raw.classes,
                "classes: at least one runner class is required",
            );
        }
        let gpu_workloads = raw.gpu_workloads.map(|g| self.gpu_workloads(g));
        let taken = raw.classes.value.0.iter().map(|(name, _)| name);
        if let Some(name) = taken
            .filter(|_| gpu_workloads.is_some())
            .find(|n| n.value == GPU_WORKLOADS_CLASS)
        {
            self.problem(
                name,
                format!("classes: {GPU_WORKLOADS_CLASS:?} is the name gpuWorkloads pods go by in metrics and logs; give the runner class another name"),
            );
        }
        let classes: Vec<RunnerClass> = raw
            .classes
            .value
            .0
            .into_iter()
            .map(|(name, class)| {
                self.class(name, class, enforcement, &ci_selector, &ci_tolerations)
            })
            .collect();
        let default_class = match classes
            .iter()
            .position(|c| c.name == raw.default_class.value)
        {
            Some(i) => i,
            None => {
                let known: Vec<&str> = classes.iter().map(|c| c.name.as_str()).collect();
                self.problem(
                    &raw.default_class,
                    format!(
                        "defaultClass: {:?} is not one of the classes ({})",
                        raw.default_class.value,
                        known.join(", ")
                    ),
                );
                0
            }
        };
        let limits_env = self.limits_env(raw.limits_env);
        Policy {
            keys: Keys::new(&prefix),
            prefix,
            job_pods,
            docker,
            on_exceed,
            enforcement,
            classes,
            default_class,
            gpu_workloads,
            limits_env,
            ephemeral_containers: raw.ephemeral_containers.unwrap_or_default(),
            hash: String::new(),
            origin: self.origin().to_string(),
        }
    }
}

/// The first 12 hex digits of the source's SHA-256: short enough for a pod annotation.
fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
