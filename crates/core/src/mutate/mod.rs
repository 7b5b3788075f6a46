//! The pure core: one AdmissionRequest and the facts about its namespace in, one
//! decision out. No I/O, no clock, no globals, so every behaviour is a unit test.
//!
//! Order of work (docs/behaviour.md): skip what is not ours, choose the runner class
//! from trusted facts, read the job author's override annotations, then compute the
//! changes as targeted patch operations, leaving out (or denying) any the API server
//! would refuse (see [`admissible`]). A pod that is not a job pod may still be ours
//! as a GPU workload (`gpuWorkloads`, in `gpu_workloads`). After creation, an in-place
//! resize (`resize`) and added ephemeral containers ([`ephemeral_containers`]) of a job
//! pod are allowed or denied, never patched.

pub mod admissible;
mod class;
mod docker;
pub mod ephemeral_containers;
mod gpu_workloads;
mod limits_env;
mod nvidia;
mod overrides;
mod patch;
mod resize;
mod resources;
mod scheduling;
pub mod view;

use std::collections::BTreeMap;

use crate::policy::{EphemeralContainers, OPT_IN_VALUE, OPT_IN_WARN_VALUE, Policy, RunnerClass};

pub use admissible::RuntimeClassFacts;
pub(crate) use class::pod_spelling;
pub use class::{ClassReason, RUNNER_ID_SHORT_LABEL};
pub use overrides::{OverrideKind, OverrideRecord, OverrideResult};
pub use patch::{Change, Patch};
pub use view::{AdmissionRequest, Pod};

/// Label GitLab Runner (17.9+) puts on job pods with the runner's name.
pub const RUNNER_NAME_LABEL: &str = "manager.runner.gitlab.com/name";
/// Annotation the kubelet puts on mirror pods, which must not be mutated.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Job pods with more containers than this are denied. The patch grows with the
/// containers (one `resources` operation each, ~190 bytes once encoded), so a 4 MiB pod
/// of 190,000 bare `svc-N` containers made a 36 MB answer and held ~0.5 GB while building
/// it: far above the webhook's memory limit. Allowing such a pod unchanged instead would
/// let a job escape its class by declaring enough services, so it is denied.
pub const MAX_CONTAINERS: usize = 1000;

/// What the webhook knows about the request's namespace.
#[derive(Debug, Clone, Copy)]
pub enum NamespaceFacts<'a> {
    /// No cluster access: the webhook configuration's namespaceSelector already
    /// required the opt-in label, so the namespace counts as opted in, with no class label.
    TrustSelector,
    /// The namespace's labels, from the cluster.
    Labels(&'a BTreeMap<String, String>),
    /// No cluster access and no opt-in guarantee (the GPU workloads webhook entry selects
    /// every non-system namespace): not opted in, no labels; only the request's
    /// namespace name is known.
    NameOnly,
}

impl NamespaceFacts<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        match self {
            NamespaceFacts::TrustSelector | NamespaceFacts::NameOnly => None,
            NamespaceFacts::Labels(labels) => labels.get(key).map(String::as_str),
        }
    }
}

/// Everything the core knows about the cluster around one request. A bare
/// [`NamespaceFacts`] converts into it with the RuntimeClasses unknown, as a review
/// through the [`Entry::OptedIn`] entry.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub namespace: NamespaceFacts<'a>,
    pub runtime_classes: RuntimeClassFacts<'a>,
    pub entry: Entry,
}

impl<'a> From<NamespaceFacts<'a>> for Facts<'a> {
    fn from(namespace: NamespaceFacts<'a>) -> Self {
        Facts {
            namespace,
            runtime_classes: RuntimeClassFacts::Unknown,
            entry: Entry::OptedIn,
        }
    }
}

/// Which of the two webhook entries sent the review (manifests/base).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `pods.…`: its namespaceSelector requires the opt-in label. It decides job pods.
    OptedIn,
    /// `gpu-workloads.…`: pods asking for a GPU in every non-system namespace, for
    /// `gpuWorkloads`. A GPU job pod in an opted-in namespace reaches both entries;
    /// this one leaves it to the other, so it is decided, warned about and counted once.
    /// A job-shaped pod in a namespace that did not opt in is a GPU workload here.
    GpuWorkloads,
}

/// A change the policy asks for that the API server would refuse, and what the webhook
/// did instead (see [`admissible`]). Counted in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusedChange {
    /// Socket mode's hostPath volume in a namespace whose Pod Security level refuses
    /// it: the Docker change was skipped.
    DockerSocket,
    /// A GPU class's RuntimeClass that does not exist: the pod was denied.
    RuntimeClass,
}

impl RefusedChange {
    pub const ALL: [RefusedChange; 2] = [RefusedChange::DockerSocket, RefusedChange::RuntimeClass];

    /// The `change` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedChange::DockerSocket => "docker-socket",
            RefusedChange::RuntimeClass => "runtime-class",
        }
    }

    /// The `action` metric label: what the webhook did instead.
    pub fn action(self) -> &'static str {
        match self {
            RefusedChange::DockerSocket => "skipped",
            RefusedChange::RuntimeClass => "denied",
        }
    }
}

/// Why a request was allowed without looking further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NotPodCreate,
    NamespaceNotOptedIn,
    MirrorPod,
    NotJobPod,
    /// Not a job pod, in a `gpuWorkloads` namespace, asking for no GPU.
    NoGpuRequest,
    /// A job pod reviewed through the GPU workloads entry: the opted-in entry decides it.
    JobPodOnGpuEntry,
    /// Ephemeral containers added to a job pod, under `ephemeralContainers: allow`.
    EphemeralContainersAllowed,
    /// On the GPU workloads entry, in a namespace that did not opt in: the policy has no
    /// `gpuWorkloads` section.
    NoGpuWorkloads,
    /// On the GPU workloads entry, in a namespace that did not opt in: `gpuWorkloads`
    /// does not select it.
    NotGpuWorkloadsNamespace,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotPodCreate => "not a pod CREATE",
            SkipReason::NamespaceNotOptedIn => "namespace not opted in",
            SkipReason::MirrorPod => "mirror pod",
            SkipReason::NotJobPod => "not a GitLab Runner job pod",
            SkipReason::NoGpuRequest => "not a job pod and asks for no GPU",
            SkipReason::JobPodOnGpuEntry => "job pod: decided through the opted-in entry",
            SkipReason::EphemeralContainersAllowed => {
                "ephemeral containers: allowed by the policy (ephemeralContainers: allow)"
            }
            SkipReason::NoGpuWorkloads => "GPU pod: the policy has no gpuWorkloads section",
            SkipReason::NotGpuWorkloadsNamespace => {
                "GPU pod: gpuWorkloads does not select the namespace"
            }
        }
    }
}

/// The class chosen for a job pod, and why.
#[derive(Debug, Clone)]
pub struct Chosen<'p> {
    pub class: &'p RunnerClass,
    pub reason: ClassReason,
}

#[derive(Debug)]
pub enum Decision<'p> {
    Skip(SkipReason),
    /// Refused: an invalid override (or a pod the API server would reject anyway).
    Deny {
        chosen: Chosen<'p>,
        /// The pod's name, or its generateName when the name is not set yet.
        pod: String,
        message: String,
        overrides: Vec<OverrideRecord>,
        /// Set when the denial is for a change the API server would refuse.
        refused: Option<RefusedChange>,
    },
    /// Allowed, with the changes (possibly none).
    Allow(Mutation<'p>),
}

#[derive(Debug)]
pub struct Mutation<'p> {
    pub chosen: Chosen<'p>,
    /// The pod's name, or its generateName when the name is not set yet.
    pub pod: String,
    pub patch: Patch,
    pub warnings: Vec<String>,
    pub overrides: Vec<OverrideRecord>,
    /// Changes left out because the API server would refuse them.
    pub refused: Vec<RefusedChange>,
}

/// A request the core cannot read: answered with HTTP 400, not with a decision.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("request.object is missing; a CREATE or UPDATE review must carry the pod")]
    Missing,
    #[error("request.object is not a valid Pod: {0}")]
    Invalid(String),
}

/// What kind of review a request is, for the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reviewed {
    /// A pod CREATE: the only review the webhook changes.
    PodCreate,
    /// An in-place resize (`pods/resize`, Kubernetes 1.35+): held to the class ceiling,
    /// allowed or denied, never patched (`resize`).
    PodResize,
    /// Ephemeral containers added (`pods/ephemeralcontainers`, `kubectl debug`): held
    /// to `ephemeralContainers`, allowed or denied, never patched (`ephemeral_containers`).
    PodEphemeralContainers,
    /// Anything else: allowed unchanged.
    Other,
}

/// What kind of review a request with this kind, operation and subresource is.
pub(crate) fn reviewed(
    kind: &view::GroupVersionKind<'_>,
    operation: &str,
    sub_resource: Option<&str>,
) -> Reviewed {
    let pod = kind.group.is_empty() && kind.version == "v1" && kind.kind == "Pod";
    match (pod, operation, sub_resource.unwrap_or("")) {
        (true, "CREATE", "") => Reviewed::PodCreate,
        (true, "UPDATE", "resize") => Reviewed::PodResize,
        (true, "UPDATE", "ephemeralcontainers") => Reviewed::PodEphemeralContainers,
        _ => Reviewed::Other,
    }
}

/// Decides what to do with one AdmissionRequest.
pub fn decide<'p, 'f>(
    policy: &'p Policy,
    facts: impl Into<Facts<'f>>,
    request: &AdmissionRequest<'_>,
) -> Result<Decision<'p>, ObjectError> {
    let facts = facts.into();
    let kind = reviewed(
        &request.kind,
        &request.operation,
        request.sub_resource.as_deref(),
    );
    if kind == Reviewed::Other {
        return Ok(Decision::Skip(SkipReason::NotPodCreate));
    }
    if !in_scope(
        policy,
        request.namespace.as_deref().unwrap_or(""),
        facts.namespace,
    ) {
        // The GPU entry sees every namespace: its skips are about gpuWorkloads.
        return Ok(Decision::Skip(match (facts.entry, &policy.gpu_workloads) {
            (Entry::OptedIn, _) => SkipReason::NamespaceNotOptedIn,
            (Entry::GpuWorkloads, None) => SkipReason::NoGpuWorkloads,
            (Entry::GpuWorkloads, Some(_)) => SkipReason::NotGpuWorkloadsNamespace,
        }));
    }
    if kind != Reviewed::PodCreate {
        return decide_update(policy, facts, request, kind);
    }
    if let Some(pod) = &request.pod {
        return decide_pod(policy, facts, request, pod);
    }
    let raw = request.object.ok_or(ObjectError::Missing)?;
    let view::Object(pod) = serde_json::from_str::<view::Object<Pod<'_>>>(raw.get())
        .map_err(|e| ObjectError::Invalid(e.to_string()))?;
    decide_pod(policy, facts, request, &pod)
}

/// Whether the policy applies in the namespace at all (its opt-in label, `enabled` or
/// `warn`: the decision is the same, `crate::enforcement` decides whether it is applied).
pub fn opted_in(policy: &Policy, namespace: NamespaceFacts<'_>) -> bool {
    match namespace {
        NamespaceFacts::TrustSelector => true,
        NamespaceFacts::NameOnly => false,
        NamespaceFacts::Labels(_) => matches!(
            namespace.label(&policy.keys.opt_in),
            Some(OPT_IN_VALUE | OPT_IN_WARN_VALUE)
        ),
    }
}

/// Whether the policy may apply in the namespace at all: it opted in, or `gpuWorkloads`
/// selects it. `name` is the request's namespace.
pub fn in_scope(policy: &Policy, name: &str, namespace: NamespaceFacts<'_>) -> bool {
    opted_in(policy, namespace) || gpu_workloads::selects(policy, name, namespace).is_some()
}

/// The decision for a pod CREATE in a namespace [`in_scope`].
pub fn decide_pod<'p>(
    policy: &'p Policy,
    facts: Facts<'_>,
    request: &AdmissionRequest<'_>,
    pod: &Pod<'_>,
) -> Result<Decision<'p>, ObjectError> {
    let namespace = facts.namespace;
    let annotations = pod.meta().annotations.as_ref();
    if annotations.is_some_and(|a| a.get(MIRROR_POD_ANNOTATION).is_some()) {
        return Ok(Decision::Skip(SkipReason::MirrorPod));
    }
    let gpu_workload = || {
        let name = request.namespace.as_deref().unwrap_or("");
        match gpu_workloads::selects(policy, name, namespace) {
            Some((g, selected)) => named(
                gpu_workloads::decide(g, selected, name, pod, facts.runtime_classes),
                pod,
            ),
            None => Decision::Skip(SkipReason::NotJobPod),
        }
    };
    if !is_job_pod(policy, pod) {
        return Ok(gpu_workload());
    }
    if facts.entry == Entry::GpuWorkloads {
        // A job pod of an opted-in namespace is the opted-in entry's (it reaches both).
        // Where the namespace did not opt in no runner class applies, so a job-shaped
        // pod asking for a GPU is a GPU workload like any other: skipping it let it run
        // unplaced with the NVIDIA toolkit's variables. Without cluster access
        // (`NameOnly`) whether the namespace opted in is unknown: left to the other
        // entry, as a pod decided on both would be placed twice.
        let opted_in_or_unknown = match namespace {
            NamespaceFacts::Labels(_) => opted_in(policy, namespace),
            NamespaceFacts::TrustSelector | NamespaceFacts::NameOnly => true,
        };
        return Ok(if opted_in_or_unknown {
            Decision::Skip(SkipReason::JobPodOnGpuEntry)
        } else {
            gpu_workload()
        });
    }
    if !opted_in(policy, namespace) {
        return Ok(Decision::Skip(SkipReason::NamespaceNotOptedIn));
    }
    let (chosen, mut warnings) = class::choose(policy, namespace, request, pod);
    let spec = pod.spec();
    let containers = spec.containers.as_ref().map_or(0, Vec::len)
        + spec.init_containers.as_ref().map_or(0, Vec::len);
    if containers > MAX_CONTAINERS {
        return Ok(Decision::Deny {
            chosen,
            pod: pod_name(pod),
            message: format!(
                "the pod has {containers} containers and init containers; ci-pod-webhook applies its policy to at most {MAX_CONTAINERS} (a GitLab job pod has build, helper and one container per service)"
            ),
            overrides: Vec::new(),
            refused: None,
        });
    }
    if let Some(name) = admissible::missing_runtime_class(chosen.class, facts.runtime_classes) {
        return Ok(Decision::Deny {
            pod: pod_name(pod),
            message: admissible::missing_runtime_class_message(chosen.class, name),
            chosen,
            overrides: Vec::new(),
            refused: Some(RefusedChange::RuntimeClass),
        });
    }
    let overrides = match overrides::read(policy, chosen.class, pod) {
        Ok(o) => o,
        Err(denied) => {
            return Ok(Decision::Deny {
                chosen,
                pod: pod_name(pod),
                message: denied.message,
                overrides: denied.records,
                refused: None,
            });
        }
    };
    warnings.extend(overrides.warnings.iter().cloned());

    let mut patch = Patch::default();
    class::audit_annotations(policy, chosen.class, pod, &mut patch);
    if let Err(message) = resources::apply(
        policy,
        chosen.class,
        &overrides,
        pod,
        &mut patch,
        &mut warnings,
    ) {
        return Ok(Decision::Deny {
            chosen,
            pod: pod_name(pod),
            message,
            overrides: overrides.records,
            refused: None,
        });
    }
    scheduling::apply(chosen.class, pod, &mut patch, &mut warnings);
    let mut refused = Vec::new();
    if !overrides.docker_disabled {
        admissible::docker(
            policy,
            namespace,
            pod,
            &mut patch,
            &mut warnings,
            &mut refused,
        );
    }
    nvidia::apply(pod, &mut patch, &mut warnings);
    limits_env::apply(policy, chosen.class, pod, &mut patch, &mut warnings);
    patch.name_containers(pod);
    Ok(Decision::Allow(Mutation {
        chosen,
        pod: pod_name(pod),
        patch,
        warnings,
        overrides: overrides.records,
        refused,
    }))
}

/// The decision for an UPDATE of a pod subresource the webhook reviews, for a pod the
/// policy governs: a job pod in a namespace that opted in. Only allowed (with no patch:
/// each subresource's strategy drops every change outside its own fields after
/// admission) or denied.
fn decide_update<'p>(
    policy: &'p Policy,
    facts: Facts<'_>,
    request: &AdmissionRequest<'_>,
    kind: Reviewed,
) -> Result<Decision<'p>, ObjectError> {
    if !opted_in(policy, facts.namespace) {
        return Ok(Decision::Skip(SkipReason::NamespaceNotOptedIn));
    }
    let pod = read_pod(request.object)?.ok_or(ObjectError::Missing)?;
    let old = read_pod(request.old_object)?;
    let annotations = pod.meta().annotations.as_ref();
    if annotations.is_some_and(|a| a.get(MIRROR_POD_ANNOTATION).is_some()) {
        return Ok(Decision::Skip(SkipReason::MirrorPod));
    }
    if !is_job_pod(policy, &pod) {
        return Ok(Decision::Skip(SkipReason::NotJobPod));
    }
    if kind == Reviewed::PodEphemeralContainers
        && policy.ephemeral_containers == EphemeralContainers::Allow
    {
        return Ok(Decision::Skip(SkipReason::EphemeralContainersAllowed));
    }
    // The class from trusted facts, as at CREATE: never the pod's class annotation,
    // which a job that may update its pod can rewrite.
    let (chosen, warnings) = class::choose(policy, facts.namespace, request, &pod);
    let (problems, warnings) = match kind {
        Reviewed::PodResize => resize::check(chosen.class, &pod, old.as_ref(), warnings),
        _ => (
            ephemeral_containers::check_added(policy, &pod, old.as_ref()),
            warnings,
        ),
    };
    let pod_name = pod_name(&pod);
    if problems.is_empty() {
        return Ok(Decision::Allow(Mutation {
            chosen,
            pod: pod_name,
            patch: Patch::default(),
            warnings,
            overrides: Vec::new(),
            refused: Vec::new(),
        }));
    }
    let message = match kind {
        Reviewed::PodResize => format!("resize of pod {pod_name}: {}", problems.join("; ")),
        _ => ephemeral_containers::message(policy, &problems),
    };
    Ok(Decision::Deny {
        chosen,
        pod: pod_name,
        message,
        overrides: Vec::new(),
        refused: None,
    })
}

/// A raw object read as a Pod.
fn read_pod<'a>(
    raw: Option<&'a serde_json::value::RawValue>,
) -> Result<Option<Pod<'a>>, ObjectError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    serde_json::from_str::<view::Object<Pod<'a>>>(raw.get())
        .map(|view::Object(pod)| Some(pod))
        .map_err(|e| ObjectError::Invalid(e.to_string()))
}

/// The decision, its changes naming the containers they change.
fn named<'p>(mut decision: Decision<'p>, pod: &Pod<'_>) -> Decision<'p> {
    if let Decision::Allow(m) = &mut decision {
        m.patch.name_containers(pod);
    }
    decision
}

/// The policy's job-pod test: all listed containers present, or the runner label set.
/// A pod without a spec has no containers and is never a job pod.
fn is_job_pod(policy: &Policy, pod: &Pod<'_>) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let test = &policy.job_pods;
    let has_containers = test.containers.iter().all(|want| {
        spec.containers
            .iter()
            .flatten()
            .any(|c| c.name == want.as_str())
    });
    let has_label = test.or_label.as_deref().is_some_and(|label| {
        pod.meta()
            .labels
            .as_ref()
            .is_some_and(|l| l.get(label).is_some())
    });
    has_containers || has_label
}

/// The pod's name, or its generateName (runners up to 16.1 leave the name empty).
fn pod_name(pod: &Pod<'_>) -> String {
    let meta = pod.meta();
    match (meta.name.as_deref(), meta.generate_name.as_deref()) {
        (Some(name), _) if !name.is_empty() => name.to_string(),
        (_, Some(generate)) => generate.to_string(),
        _ => String::new(),
    }
}

/// Shortens untrusted text for messages: annotation values can be a megabyte.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}… ({} bytes)", s.len())
    }
}

#[cfg(test)]
mod tests;
