//! Pod-level `spec.resources` (Kubernetes 1.32+ `PodLevelResources`; GitLab Runner 18.10+
//! sets it from `KUBERNETES_POD_CPU_*` / `KUBERNETES_POD_MEMORY_*`): held to the class,
//! and kept consistent with every container the webhook changes.
//!
//! The pod's ceiling is the class `max`: a pod-level request or limit above it is lowered
//! to it, and a pod-level request without a pod-level limit gets the ceiling as its limit.
//! For a resource with pod-level values, the pod-level limit bounds every container, so
//! no class values are filled into the containers; their own values are lowered to the
//! pod-level limit, and their requests are fitted into the pod-level request.
//!
//! The API server's rules this keeps (Kubernetes `pkg/apis/core/v1/defaults.go`
//! `SetDefaults_Pod`/`defaultPodRequests`, and `pkg/apis/core/validation/validation.go`
//! `validatePodResourceConsistency` and `validateResourceRequirements`), in order:
//! - defaulting: a container (or init container) limit without a request makes the
//!   request equal to the limit; then a pod-level limit without a pod-level request makes
//!   the pod request the containers' aggregate request, or the pod limit if no container
//!   has a request for that resource;
//! - the pod-level request is ≤ the pod-level limit;
//! - the containers' aggregate request (`AggregateContainerRequests`: the larger of the
//!   app containers plus sidecars summed, and each init container plus the sidecars
//!   started before it) is ≤ the pod-level request;
//! - each app container's limit is ≤ the pod-level limit (kept here for init containers
//!   too: a larger limit would be meaningless under the pod's);
//! - only cpu, memory and hugepages-* exist at pod level; hugepages are on the class's
//!   allow-list as in the containers (`extended_resources.rs`).
//!
//! So the budget the containers' aggregate request must fit is the pod-level request, or
//! the pod-level limit when the pod has no request of its own.

use super::{Entry, Planned, Section, edits, emit, existing};
use crate::mutate::patch::Patch;
use crate::mutate::view::Pod;
use crate::policy::{ContainerList, ResourceName, RunnerClass};
use crate::quantity::Quantity;

/// The pod-level resources supported by Kubernetes that the class bounds.
const POD_LEVEL: [ResourceName; 2] = [ResourceName::Cpu, ResourceName::Memory];

/// The pod-level values as planned, for the resources the pod sets at pod level.
#[derive(Debug, Default)]
pub(super) struct Budget {
    levels: Vec<(ResourceName, Entry)>,
    /// Everything else at pod level (hugepages): granted and lowered, or removed.
    others: Vec<Entry>,
}

impl Budget {
    /// Reads `spec.resources` and holds it to the class ceiling.
    pub fn plan(
        class: &RunnerClass,
        pod: &Pod<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<Budget, String> {
        let resources = pod.spec().resources.as_ref();
        let limits = resources.and_then(|r| r.limits.as_ref());
        let requests = resources.and_then(|r| r.requests.as_ref());
        let mut levels = Vec::new();
        for resource in POD_LEVEL {
            let key = resource.as_str();
            let ex_limit = existing(limits, key, "spec", Section::Limits)?;
            let ex_request = existing(requests, key, "spec", Section::Requests)?;
            if ex_limit.is_none() && ex_request.is_none() {
                continue;
            }
            let max = class.max.get(&resource).copied();
            let clamp = |q: Quantity, section: Section, warnings: &mut Vec<String>| match max {
                Some(m) if q > m => {
                    warnings.push(format!(
                        "pod: spec.resources.{}.{key} {q} lowered to the ceiling {m} of class {}",
                        section.as_str(),
                        class.name
                    ));
                    m
                }
                _ => q,
            };
            // Without a pod-level limit the class ceiling is the pod's limit: the
            // containers get no class values of their own under pod-level resources.
            let limit = match &ex_limit {
                Some((q, _)) => Some(clamp(*q, Section::Limits, warnings)),
                None => max,
            };
            let mut request = ex_request
                .as_ref()
                .map(|(q, _)| clamp(*q, Section::Requests, warnings));
            if let (Some(r), Some(l)) = (request, limit)
                && r > l
            {
                warnings.push(format!(
                    "pod: spec.resources.requests.{key} {r} lowered to the pod-level limit {l}"
                ));
                request = Some(l);
            }
            let entry = Entry {
                key: key.to_string(),
                ex_limit,
                ex_request,
                limit,
                request,
            };
            levels.push((resource, entry));
        }
        let others = super::extended_resources::plan_pod_level(class, resources, warnings)?;
        Ok(Budget { levels, others })
    }

    fn level(&self, resource: ResourceName) -> Option<&Entry> {
        self.levels
            .iter()
            .find(|(r, _)| *r == resource)
            .map(|(_, e)| e)
    }

    /// Whether the pod sets this resource at pod level.
    pub fn governs(&self, resource: ResourceName) -> bool {
        self.level(resource).is_some()
    }

    /// The pod-level limit, as planned.
    pub fn limit(&self, resource: ResourceName) -> Option<Quantity> {
        self.level(resource).and_then(|e| e.limit)
    }

    /// Lowers container requests until their aggregate fits the pod's budget: init
    /// containers (in order) and then app containers keep their effective request (the
    /// request, or the limit it defaults to) while it fits what is left, and get what is
    /// left (down to 0) when it does not. Sidecars and app containers use up the budget;
    /// a plain init container only has to fit beside the sidecars started before it.
    pub fn fit_requests(&self, planned: &mut [Planned<'_, '_>], warnings: &mut Vec<String>) {
        for (_, level) in &self.levels {
            let Some(budget) = level.request.or(level.limit) else {
                continue;
            };
            let mut used = Quantity::ZERO;
            for list in [ContainerList::InitContainers, ContainerList::Containers] {
                for p in planned.iter_mut().filter(|p| p.at.list == list) {
                    let uses_budget = list == ContainerList::Containers || p.at.is_sidecar();
                    let name = p.name().to_string();
                    let Some(entry) = p.entries.iter_mut().find(|e| e.key == level.key) else {
                        continue;
                    };
                    let room = budget.minus(used).max(Quantity::ZERO);
                    let effective = entry.request.or(entry.limit).unwrap_or(Quantity::ZERO);
                    let kept = if effective > room {
                        warnings.push(format!(
                            "{name}: requests.{} {effective} lowered to {room} to fit the pod-level request {budget} (spec.resources)",
                            level.key
                        ));
                        entry.request = Some(room);
                        room
                    } else {
                        effective
                    };
                    if uses_budget {
                        used = used.plus(kept);
                    }
                }
            }
        }
    }

    /// The patch operations for `spec.resources`.
    pub fn emit(&self, pod: &Pod<'_>, patch: &mut Patch) {
        emit(
            patch,
            &["spec", "resources"],
            pod.spec().resources.as_ref(),
            edits(self.levels.iter().map(|(_, e)| e).chain(&self.others)),
        );
    }
}
