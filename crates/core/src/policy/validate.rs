//! One conversion from the raw policy file into a validated [`Policy`].
//!
//! Every problem is collected with the line and column of the value at fault, so an
//! operator fixing a policy sees all of them at once rather than one per attempt.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::host_paths::{self, PathProblem};
use super::names::{
    is_dns_label, is_dns_subdomain, is_extended_resource, is_label_value, is_qualified_name,
};
use super::raw::*;
use super::*;

const DEFAULT_PREFIX: &str = "ci.skao.int";
const DEFAULT_RUNNER_LABEL: &str = "manager.runner.gitlab.com/name";
const DEFAULT_SOCKET_PATH: &str = "/var/run/ci-dind/docker.sock";
const DEFAULT_SOCKET_VOLUME: &str = "ci-dind";
const DEFAULT_TLS_MOUNT: &str = "/certs/client";
const DEFAULT_TLS_VOLUME: &str = "ci-dind-certs";
const DEFAULT_GPU_RESOURCE: &str = "nvidia.com/gpu";

pub(super) fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = serde_saphyr::from_str(text).map_err(|e| yaml_error(&e, text, origin))?;
    let mut v = Validator {
        origin,
        problems: Vec::new(),
    };
    let policy = v.policy(raw);
    if v.problems.is_empty() {
        Ok(policy)
    } else {
        Err(PolicyError::Invalid(v.problems))
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

/// Collects problems; the `gpu_workloads` and `limits_env` modules add sections to it.
pub(super) struct Validator<'a> {
    origin: &'a str,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    pub(super) fn problem<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: self.origin.to_string(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            message: message.into(),
        });
    }

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
            hash: String::new(),
            origin: self.origin.to_string(),
        }
    }

    fn job_pods(&mut self, raw: Option<RawJobPods>) -> JobPodTest {
        let raw = raw.unwrap_or(RawJobPods {
            containers: None,
            or_label: None,
        });
        let containers = match raw.containers {
            Some(c) => {
                if c.value.is_empty() || !c.value.iter().all(|n| is_dns_label(n)) {
                    self.problem(
                        &c,
                        "jobPods.containers: give one or more container names (DNS labels)",
                    );
                }
                c.value
            }
            None => vec!["build".to_string(), "helper".to_string()],
        };
        let or_label = match raw.or_label {
            Some(l) if l.value.is_empty() => None,
            Some(l) => {
                if !is_qualified_name(&l.value) {
                    self.problem(
                        &l,
                        format!("jobPods.orLabel: {:?} is not a valid label key", l.value),
                    );
                }
                Some(l.value)
            }
            None => Some(DEFAULT_RUNNER_LABEL.to_string()),
        };
        JobPodTest {
            containers,
            or_label,
        }
    }

    fn docker(&mut self, raw: Option<RawDocker>) -> Docker {
        let Some(raw) = raw else {
            return Docker {
                mode: DockerMode::Socket {
                    socket_path: DEFAULT_SOCKET_PATH.to_string(),
                    mount: SocketMount::Directory,
                    host_path: "/var/run/ci-dind".to_string(),
                    volume_name: DEFAULT_SOCKET_VOLUME.to_string(),
                },
                containers: vec!["build".to_string()],
            };
        };
        let containers = match raw.containers {
            Some(c) => {
                if c.value.is_empty() || !c.value.iter().all(|n| is_dns_label(n)) {
                    self.problem(
                        &c,
                        "docker.containers: give one or more container names (DNS labels)",
                    );
                }
                c.value
            }
            None => vec!["build".to_string()],
        };
        let volume_name = self.dns_label_or(
            raw.volume_name.as_ref(),
            "docker.volumeName",
            DEFAULT_SOCKET_VOLUME,
        );
        let mode = match raw.mode.as_ref().map(|m| m.value) {
            Some(RawDockerMode::Socket) | None => {
                self.socket(raw.socket_path.as_ref(), raw.mount.as_ref(), volume_name)
            }
            Some(RawDockerMode::Tcp) => {
                let tcp = raw.tcp.unwrap_or(RawDockerTcp {
                    port: None,
                    tls: None,
                });
                let tls = tcp.tls.map(|tls| {
                    if !is_dns_subdomain(&tls.secret_name.value) {
                        self.problem(
                            &tls.secret_name,
                            format!(
                                "docker.tcp.tls.secretName: {:?} is not a valid Secret name",
                                tls.secret_name.value
                            ),
                        );
                    }
                    let mount_path = match &tls.mount_path {
                        Some(p) if parent_dir(&p.value).is_none() => {
                            self.problem(
                                p,
                                "docker.tcp.tls.mountPath: must be an absolute, normalised path",
                            );
                            p.value.clone()
                        }
                        Some(p) => p.value.clone(),
                        None => DEFAULT_TLS_MOUNT.to_string(),
                    };
                    DockerTls {
                        secret_name: tls.secret_name.value,
                        mount_path,
                        volume_name: DEFAULT_TLS_VOLUME.to_string(),
                    }
                });
                let default_port = if tls.is_some() { 2376 } else { 2375 };
                let port = match tcp.port {
                    Some(p) if p.value == 0 => {
                        self.problem(&p, "docker.tcp.port: must be between 1 and 65535");
                        default_port
                    }
                    Some(p) => p.value,
                    None => default_port,
                };
                DockerMode::Tcp { port, tls }
            }
            Some(RawDockerMode::Off) => DockerMode::Off,
        };
        if let Some(m) = &raw.mount
            && !matches!(mode, DockerMode::Socket { .. })
        {
            self.problem(m, "docker.mount: applies to mode: socket only; remove it");
        }
        Docker { mode, containers }
    }

    /// Socket mode: the path checked against the host-path rules (`host_paths.rs`).
    fn socket(
        &mut self,
        raw_path: Option<&Spanned<String>>,
        raw_mount: Option<&Spanned<RawSocketMount>>,
        volume_name: String,
    ) -> DockerMode {
        let socket_path = raw_path.map_or(DEFAULT_SOCKET_PATH, |p| p.value.as_str());
        let mount = match raw_mount.map(|m| m.value) {
            Some(RawSocketMount::File) => SocketMount::File,
            Some(RawSocketMount::Directory) | None => SocketMount::Directory,
        };
        let dir = socket_path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let host_path = match mount {
            SocketMount::File => socket_path,
            SocketMount::Directory => dir,
        };
        if let Some(p) = raw_path {
            let what = "docker.socketPath";
            match host_paths::check_socket_path(socket_path) {
                Err(PathProblem::Relative) => self.problem(p, format!("{what}: {socket_path:?} is not an absolute path; write the node daemon's socket as it is on the node, such as {DEFAULT_SOCKET_PATH}")),
                Err(PathProblem::NotNormalised { normalised: Some(n) }) => self.problem(p, format!("{what}: {socket_path:?} is not a normalised path (no ., .., // or trailing /); write {n:?}")),
                Err(PathProblem::NotNormalised { normalised: None }) => self.problem(p, format!("{what}: {socket_path:?} is not the path of a socket file, such as {DEFAULT_SOCKET_PATH}")),
                Err(PathProblem::Sensitive { tree }) => self.problem(p, format!("{what}: {socket_path:?} is inside {tree}, which holds the node's own files or other pods' data; no CI job may mount anything from there. Run the CI Docker daemon with its socket elsewhere, such as {DEFAULT_SOCKET_PATH}")),
                Ok(()) if mount == SocketMount::Directory && host_paths::is_shared_directory(dir) => {
                    let dir = if dir.is_empty() { "/" } else { dir };
                    self.problem(p, format!("{what}: {socket_path:?} is in {dir}, a directory other programs share; mount: directory (the default) would give every CI job all of {dir} (other daemons' sockets included: root on the node). Add `mount: file` to mount only the socket, or move the socket into a directory of its own, such as {DEFAULT_SOCKET_PATH}"));
                }
                Ok(()) => {}
            }
        }
        DockerMode::Socket {
            socket_path: socket_path.to_string(),
            mount,
            host_path: host_path.to_string(),
            volume_name,
        }
    }

    fn dns_label_or(&mut self, raw: Option<&Spanned<String>>, what: &str, default: &str) -> String {
        match raw {
            Some(v) => {
                if !is_dns_label(&v.value) {
                    self.problem(
                        v,
                        format!(
                            "{what}: {:?} is not a DNS label (lower-case letters, digits and -)",
                            v.value
                        ),
                    );
                }
                v.value.clone()
            }
            None => default.to_string(),
        }
    }

    fn class(
        &mut self,
        name: Spanned<String>,
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
        }
    }

    /// The class's blocks: one (the single-block form, none when it is empty), or each of
    /// a list, where an empty block is a mistake (it would match nothing).
    fn match_blocks(
        &mut self,
        class: &str,
        name: &Spanned<String>,
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

    fn gpu(
        &mut self,
        class: &str,
        raw: &Spanned<RawGpu>,
    ) -> (Gpu, BTreeMap<String, String>, Vec<Toleration>) {
        let what = format!("classes.{class}.gpu");
        let g = &raw.value;
        let resource = match &g.resource {
            Some(r) => {
                if !is_extended_resource(&r.value) {
                    self.problem(
                        r,
                        format!("{what}.resource: {:?} is not an extended resource name such as nvidia.com/gpu", r.value),
                    );
                }
                r.value.clone()
            }
            None => DEFAULT_GPU_RESOURCE.to_string(),
        };
        let count = match &g.count {
            Some(c) => match u32::try_from(c.value) {
                Ok(v) if v >= 1 => v,
                _ => {
                    self.problem(
                        c,
                        format!("{what}.count: must be a whole number of GPUs, at least 1"),
                    );
                    1
                }
            },
            None => 1,
        };
        let max = match &g.max {
            Some(m) => match u32::try_from(m.value) {
                Ok(v) if v >= count => v,
                _ => {
                    self.problem(
                        m,
                        format!("{what}.max: must be a whole number at least count ({count})"),
                    );
                    count
                }
            },
            None => count,
        };
        let runtime_class_name = g
            .runtime_class_name
            .as_ref()
            .map(|r| self.runtime_class_name(&what, r));
        let selector = self.node_selector(&format!("{what}.nodeSelector"), &g.node_selector);
        let tolerations = self.tolerations(&format!("{what}.tolerations"), &g.tolerations);
        (
            Gpu {
                resource,
                count,
                max,
                runtime_class_name,
            },
            selector,
            tolerations,
        )
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

    fn role(
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
    fn ceilings(
        &mut self,
        class: &Spanned<String>,
        raw: Option<&Spanned<RawLimitList>>,
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

    fn problem_at(&mut self, at: Option<(u64, u64)>, message: String) {
        let (line, column) = at.unwrap_or((0, 0));
        self.problems.push(Problem {
            origin: self.origin.to_string(),
            line,
            column,
            message,
        });
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

    fn check_quantity<T>(&mut self, what: &str, at: &Spanned<T>, q: Quantity, positive: bool) {
        if q.is_negative() || (positive && q.is_zero()) {
            let need = if positive {
                "greater than zero"
            } else {
                "zero or more"
            };
            self.problem(at, format!("{what}: {q} must be {need}"));
        }
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

/// A runner's short token (GitLab Runner's `ShortDescription`), in the form job pod
/// names carry it: the runner lower-cases the name and writes `_` as `-`.
///
/// The short token is the first 8 characters of a legacy token, 9 after a `glrt-`,
/// `glrtr-` or `glcbt-` prefix, or 17 of a `GR1348941…` token. A full token is a secret:
/// it is refused without being repeated, so it does not end up in logs.
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
            "{shown} is not a runner short token; give the 8, 9 or 17 characters that follow runner- in the names of the runner's job pods (kubectl -n gitlab get pods), never the runner's full token"
        ));
    }
    if ![8, 9, 17].contains(&value.len()) {
        return Err(format!(
            "{value:?} has {} characters; a runner short token has 8 (legacy tokens), 9 (glrt- tokens) or 17 (GR1348941 tokens): copy it from a job pod name, runner-<token>-project-…",
            value.len()
        ));
    }
    Ok(value
        .bytes()
        .map(|b| match b {
            b'_' => '-',
            b => char::from(b.to_ascii_lowercase()),
        })
        .collect())
}

/// Adds tolerations that are not already present: tolerations are a set.
fn add_all(into: &mut Vec<Toleration>, new: impl IntoIterator<Item = Toleration>) {
    for t in new {
        if !into.contains(&t) {
            into.push(t);
        }
    }
}

/// The directory of an absolute, normalised file path (not `/` itself).
fn parent_dir(path: &str) -> Option<&str> {
    let normalised = path.starts_with('/')
        && !path.ends_with('/')
        && path[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if !normalised {
        return None;
    }
    let (dir, _) = path.rsplit_once('/')?;
    (!dir.is_empty()).then_some(dir)
}

fn resource_fields(r: &RawResourceList) -> [(ResourceName, Option<&Spanned<Quantity>>); 3] {
    [
        (ResourceName::Cpu, r.cpu.as_ref()),
        (ResourceName::Memory, r.memory.as_ref()),
        (ResourceName::EphemeralStorage, r.ephemeral_storage.as_ref()),
    ]
}

fn limit_fields(r: &RawLimitList) -> [(ResourceName, &Present<Spanned<Option<Quantity>>>); 3] {
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

/// A written `enforcement`, else the one inherited.
fn enforcement(raw: Option<RawEnforcement>, inherited: Enforcement) -> Enforcement {
    match raw {
        Some(RawEnforcement::Enforce) => Enforcement::Enforce,
        Some(RawEnforcement::Warn) => Enforcement::Warn,
        None => inherited,
    }
}
