//! `limitsEnv`: environment variables that tell a job its class and effective limits.
//!
//! Tools inside a job see the node's CPUs and memory (`nproc`, `os.cpu_count()`, older
//! JVMs), not the container's limits, so `make -j$(nproc)` on a 5-CPU class starts 30
//! jobs and is throttled or OOM-killed. The `build` container gets one variable per name
//! below; CPU and memory come from the downward API (`resourceFieldRef`), so they are
//! the limits in force after every change. Absent from the policy: on, with the default
//! names; `enabled: false` turns all of them off, a `null` name turns that one off.

use serde::Deserialize;

use super::raw::{Present, S};
use super::validate::Validator;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLimitsEnv {
    pub enabled: Option<S<bool>>,
    #[serde(default)]
    pub class: Present<S<Option<String>>>,
    #[serde(default)]
    pub cpus: Present<S<Option<String>>>,
    #[serde(default)]
    pub cpu_millicores: Present<S<Option<String>>>,
    #[serde(default)]
    pub memory_bytes: Present<S<Option<String>>>,
    #[serde(default)]
    pub gpus: Present<S<Option<String>>>,
}

/// Variable names, each `None` when turned off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsEnv {
    /// The runner class name (a plain value).
    pub class: Option<String>,
    /// `limits.cpu` in whole CPUs, rounded up (divisor 1): what `make -j` wants.
    pub cpus: Option<String>,
    /// `limits.cpu` in millicores (divisor 1m).
    pub cpu_millicores: Option<String>,
    /// `limits.memory` in bytes (divisor 1).
    pub memory_bytes: Option<String>,
    /// GPU classes only: the GPU count of `build` (a plain value: the downward API has
    /// no extended resources).
    pub gpus: Option<String>,
}

impl Default for LimitsEnv {
    fn default() -> Self {
        LimitsEnv {
            class: Some("JOB_RUNNER_CLASS".to_string()),
            cpus: Some("JOB_CPUS".to_string()),
            cpu_millicores: Some("JOB_CPU_MILLICORES".to_string()),
            memory_bytes: Some("JOB_MEMORY_BYTES".to_string()),
            gpus: Some("JOB_GPUS".to_string()),
        }
    }
}

/// Prefixes GitLab reserves for its own variables: a job would see a lie or lose one.
const RESERVED_PREFIXES: [&str; 2] = ["CI_", "GITLAB_"];
/// Variables the webhook sets for Docker.
const DOCKER_NAMES: [&str; 4] = [
    "DOCKER_HOST",
    "NODE_IP",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
];

impl Validator<'_> {
    pub(super) fn limits_env(&mut self, raw: Option<RawLimitsEnv>) -> Option<LimitsEnv> {
        let Some(raw) = raw else {
            return Some(LimitsEnv::default());
        };
        let defaults = LimitsEnv::default();
        let mut seen: Vec<String> = Vec::new();
        let mut name = |v: &mut Self, key: &str, field: Present<S<Option<String>>>, default| {
            let Present(Some(given)) = field else {
                return default;
            };
            let value = given.value.clone()?;
            let what = format!("limitsEnv.{key}");
            if let Err(message) = check_name(&value) {
                v.problem(&given, format!("{what}: {message}"));
            } else if seen.contains(&value) {
                v.problem(
                    &given,
                    format!("{what}: {value} is already used by another limitsEnv variable"),
                );
            }
            seen.push(value.clone());
            Some(value)
        };
        let env = LimitsEnv {
            class: name(self, "class", raw.class, defaults.class),
            cpus: name(self, "cpus", raw.cpus, defaults.cpus),
            cpu_millicores: name(
                self,
                "cpuMillicores",
                raw.cpu_millicores,
                defaults.cpu_millicores,
            ),
            memory_bytes: name(self, "memoryBytes", raw.memory_bytes, defaults.memory_bytes),
            gpus: name(self, "gpus", raw.gpus, defaults.gpus),
        };
        match raw.enabled {
            Some(e) if !e.value => None,
            _ => Some(env),
        }
    }
}

/// A name a shell can expand (`$JOB_CPUS`), outside GitLab's and the webhook's own.
fn check_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let shell = !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if !shell {
        return Err(format!(
            "{name:?} is not a variable name a shell can expand (letters, digits and _, not starting with a digit)"
        ));
    }
    if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(format!(
            "{name} starts with {prefix}, which GitLab reserves for its own variables; choose another prefix such as JOB_"
        ));
    }
    if DOCKER_NAMES.contains(&name) {
        return Err(format!("{name} is set by the webhook's docker section"));
    }
    Ok(())
}
