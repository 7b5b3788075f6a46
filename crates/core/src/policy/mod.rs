//! The policy: runner classes and the rules that apply to their job pods.
//!
//! A policy file is read in two stages: raw serde structs mirror the YAML and reject
//! unknown keys, then one conversion turns them into the [`Policy`] below, whose types
//! make bad states unrepresentable (quantities parsed, requests within limits,
//! tolerations well formed). Once a `Policy` exists, the core cannot fail because of
//! configuration.
//!
//! This file holds the validated types the whole core reads. Each section of the file
//! has a module of its own with its raw structs, its validated types and its checks,
//! named as its pair in `mutate/` where it has one: `job_pods`, `docker` (with
//! `host_paths`), `classes` (with `resources`, `gpus` and `extended_resources`), `gpu_workloads`,
//! `limits_env`, `ephemeral_containers`. `document` reads the file as a whole (`Policy::parse`,
//! `Policy::embedded`) and is the only module that knows every section; `validate` (the
//! problem collector and the checks sections share), `raw` and `names` serve them all;
//! `warnings` names the risks of a valid policy.

mod classes;
mod docker;
mod document;
mod ephemeral_containers;
mod extended_resources;
mod gpu_workloads;
mod gpus;
mod host_paths;
mod job_pods;
mod limits_env;
mod names;
mod raw;
mod resources;
mod validate;
mod warnings;

use std::collections::BTreeMap;
use std::fmt;

use crate::quantity::Quantity;

pub use docker::{Docker, DockerMode, DockerTls, SocketMount};
pub use ephemeral_containers::EphemeralContainers;
pub use extended_resources::{GPU_PREFIXES, HUGEPAGES_PREFIX, hugepage_size, is_standard};
pub use gpu_workloads::{
    GPU_WORKLOADS_CLASS, GpuWorkloads, NameGlob, ResourcePattern, SYSTEM_NAMESPACES,
};
pub use gpus::Gpu;
pub use job_pods::JobPodTest;
pub use limits_env::LimitsEnv;
pub use names::{
    is_dns_label, is_dns_subdomain, is_extended_resource, is_label_value, is_qualified_name,
};

/// The embedded default policy: the SKAO runner classes.
pub const DEFAULT_POLICY_YAML: &str = include_str!("default-policy.yaml");

/// A validated policy, ready for the core.
#[derive(Debug, Clone)]
pub struct Policy {
    pub prefix: String,
    pub keys: Keys,
    pub job_pods: JobPodTest,
    pub docker: Docker,
    pub on_exceed: OnExceed,
    /// The top-level `enforcement`, the default of every class.
    pub enforcement: Enforcement,
    /// Classes in file order: the first class whose match rules hold wins.
    pub classes: Vec<RunnerClass>,
    pub default_class: usize,
    /// Placement of GPU pods that are not job pods; `None`: off.
    pub gpu_workloads: Option<GpuWorkloads>,
    /// Variables telling `build` its limits; `None`: off.
    pub limits_env: Option<LimitsEnv>,
    /// What ephemeral containers added to a job pod may be (default `restricted`).
    pub ephemeral_containers: EphemeralContainers,
    /// Short hash of the policy source, written to each pod as `<prefix>/policy`.
    pub hash: String,
    /// Where the policy came from, for logs and messages.
    pub origin: String,
}

/// Label and annotation keys under the policy's prefix, built once.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Namespace label that opts a namespace in (value `enabled`).
    pub opt_in: String,
    /// Namespace label an administrator sets to pin a namespace to a class.
    pub runner_class: String,
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
    pub gpus: String,
    pub docker: String,
    /// Audit annotations written by the webhook only.
    pub class: String,
    pub policy: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        let key = |name: &str| format!("{prefix}/{name}");
        Keys {
            opt_in: key("pod-policy"),
            runner_class: key("runner-class"),
            cpu_request: key("cpu-request"),
            cpu_limit: key("cpu-limit"),
            memory_request: key("memory-request"),
            memory_limit: key("memory-limit"),
            gpus: key("gpus"),
            docker: key("docker"),
            class: key("class"),
            policy: key("policy"),
        }
    }
}

/// Value of the opt-in namespace label that enables the webhook.
pub const OPT_IN_VALUE: &str = "enabled";
/// Value of the opt-in namespace label that enables the webhook in warn mode: nothing
/// is changed or denied, the answer's warnings say what enforce would do.
pub const OPT_IN_WARN_VALUE: &str = "warn";

/// Whether a class's decisions are applied (`enforce`) or only reported as warnings
/// (`warn`, for a rollout: see `crate::enforcement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforcement {
    #[default]
    Enforce,
    Warn,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::Warn => "warn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExceed {
    Clamp,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceName {
    Cpu,
    Memory,
    EphemeralStorage,
}

impl ResourceName {
    pub const ALL: [ResourceName; 3] = [
        ResourceName::Cpu,
        ResourceName::Memory,
        ResourceName::EphemeralStorage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceName::Cpu => "cpu",
            ResourceName::Memory => "memory",
            ResourceName::EphemeralStorage => "ephemeral-storage",
        }
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the class wants for one resource's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Fill in this limit when the pod has none.
    Set(Quantity),
    /// `null` in the policy: the class wants no limit, an existing one is removed.
    Unlimited,
}

/// Requests and limits for one container role (build, helper, services).
#[derive(Debug, Clone, Default)]
pub struct RoleResources {
    pub requests: BTreeMap<ResourceName, Quantity>,
    pub limits: BTreeMap<ResourceName, Limit>,
}

/// The container roles of a job pod. Every container of a job pod has one: a container
/// left out would keep whatever the job gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Build,
    /// `helper` and the `init-permissions` init container.
    Helper,
    /// Every other container: GitLab Runner up to 17.8 names services `svc-N`, 17.9 and
    /// later after their first alias (`db`), and the job chooses both image and command.
    Service,
}

/// Which list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerList {
    Containers,
    InitContainers,
}

impl ContainerList {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerList::Containers => "containers",
            ContainerList::InitContainers => "initContainers",
        }
    }
}

impl Role {
    /// The role whose class values a container of a job pod gets. In `containers`,
    /// `build` and `helper` are themselves and anything else is a service. In
    /// `initContainers`, `init-permissions` (the helper image) is a helper and any other
    /// init container takes the build values: `init-build-uid-gid-collector` (added with
    /// `FF_DISABLE_UMASK_FOR_KUBERNETES_EXECUTOR`) runs the job's own image with the
    /// build container's resources.
    pub fn of(list: ContainerList, name: &str) -> Role {
        match (list, name) {
            (ContainerList::Containers, "build") => Role::Build,
            (ContainerList::Containers, "helper")
            | (ContainerList::InitContainers, "init-permissions") => Role::Helper,
            (ContainerList::Containers, _) => Role::Service,
            (ContainerList::InitContainers, _) => Role::Build,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    pub operator: TolerationOperator,
    pub value: String,
    pub effect: String,
    pub toleration_seconds: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TolerationOperator {
    Exists,
    Equal,
}

impl TolerationOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            TolerationOperator::Exists => "Exists",
            TolerationOperator::Equal => "Equal",
        }
    }
}

/// One block of rules that pick a class from trusted facts. All non-empty rules must
/// hold; a class matches when any of its blocks does.
#[derive(Debug, Clone, Default)]
pub struct MatchRules {
    /// Values of the runner name label `manager.runner.gitlab.com/name`.
    pub runner_names: Vec<String>,
    /// Runner short tokens, as they appear in job pod names (`runner-<token>-…`):
    /// lower-case, every `_` deleted.
    pub runner_tokens: Vec<String>,
    /// Requesting users, as `system:serviceaccount:<ns>:<name>`.
    pub service_accounts: Vec<String>,
    pub namespaces: Vec<String>,
    pub pod_labels: BTreeMap<String, String>,
}

impl MatchRules {
    pub fn is_empty(&self) -> bool {
        self.runner_names.is_empty()
            && self.runner_tokens.is_empty()
            && self.service_accounts.is_empty()
            && self.namespaces.is_empty()
            && self.pod_labels.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunnerClass {
    pub name: String,
    pub description: Option<String>,
    /// The class's `enforcement`, else the policy's.
    pub enforcement: Enforcement,
    /// The class's match blocks, in file order; empty when it has no match rules.
    pub match_blocks: Vec<MatchRules>,
    pub build: RoleResources,
    pub helper: RoleResources,
    pub services: RoleResources,
    /// Ceiling for any single container of the class and for the pod-level values; a
    /// resource left out is knowingly unlimited (`null` in the file).
    pub max: BTreeMap<ResourceName, Quantity>,
    /// CI-node, class and GPU node selectors merged (later wins).
    pub node_selector: BTreeMap<String, String>,
    /// CI-node, class and GPU tolerations, without duplicates.
    pub tolerations: Vec<Toleration>,
    pub gpu: Option<Gpu>,
    /// Extended resources and hugepages `build` may keep, each up to its maximum; every
    /// other one is removed (`extendedResources`; GPUs are `gpu`'s).
    pub extended_resources: BTreeMap<String, Quantity>,
}

impl RunnerClass {
    pub fn resources(&self, role: Role) -> &RoleResources {
        match role {
            Role::Build => &self.build,
            Role::Helper => &self.helper,
            Role::Service => &self.services,
        }
    }
}

/// A policy file that could not be loaded. The message names the file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read (the core reads no files; the shell reports it so).
    #[error("cannot read policy file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// One or more problems, each on its own line as `file:line:column: message`.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One thing wrong in a policy file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.origin, self.line, self.column, self.message
        )
    }
}

impl Policy {
    pub fn class(&self, name: &str) -> Option<(usize, &RunnerClass)> {
        self.classes
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }
}

#[cfg(test)]
mod tests;
