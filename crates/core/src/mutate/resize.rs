//! In-place resize of a job pod (`pods/resize`, GA in Kubernetes 1.35; beta from 1.33).
//! The API server changes a running pod's CPU and memory through this subresource, and
//! a webhook registered only for pod CREATE never sees it: `kubectl patch --subresource
//! resize` took an admitted job pod to 64 CPU / 200Gi (issue 25, point 2). Here every
//! container, init container and the pod level are held to the class ceiling (`max`)
//! again.
//!
//! The answer is allow or deny, never a patch: the resize strategy keeps only container
//! resources and resizePolicy (and pod-level resources) and drops every other change
//! after admission, and lowering a value silently would resize a job to what it did not
//! ask for. A value that was above the ceiling before the resize (a pod admitted under an
//! older policy) may stay or fall, with a warning, but not rise.

use super::view::{Container, Pod, QuantityMap, Resources};
use crate::policy::{ContainerList, ResourceName, RunnerClass};
use crate::quantity::Quantity;

/// The problems of a resize from `old` to `pod` for `class` (empty: allowed), and the
/// warnings, added to `warnings`.
pub(super) fn check(
    class: &RunnerClass,
    pod: &Pod<'_>,
    old: Option<&Pod<'_>>,
    mut warnings: Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    for list in [ContainerList::Containers, ContainerList::InitContainers] {
        for c in containers(pod, list) {
            let before = old
                .map(|o| containers(o, list))
                .and_then(|cs| cs.iter().find(|b| b.name == c.name))
                .and_then(|b| b.resources.as_ref());
            let place = format!("spec.{}[{}].resources", list.as_str(), c.name);
            judge(
                class,
                &place,
                c.resources.as_ref(),
                before,
                &mut problems,
                &mut warnings,
            );
        }
    }
    judge(
        class,
        "spec.resources",
        pod.spec().resources.as_ref(),
        old.and_then(|o| o.spec().resources.as_ref()),
        &mut problems,
        &mut warnings,
    );
    (problems, warnings)
}

fn containers<'c, 'a>(pod: &'c Pod<'a>, list: ContainerList) -> &'c [Container<'a>] {
    let spec = pod.spec();
    match list {
        ContainerList::Containers => spec.containers.as_deref(),
        ContainerList::InitContainers => spec.init_containers.as_deref(),
    }
    .unwrap_or_default()
}

/// One `resources` (at `place`) after the resize, against the one before.
fn judge(
    class: &RunnerClass,
    place: &str,
    new: Option<&Resources<'_>>,
    before: Option<&Resources<'_>>,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    for section in ["limits", "requests"] {
        for resource in ResourceName::ALL {
            let Some(ceiling) = class.max.get(&resource) else {
                continue;
            };
            let key = resource.as_str();
            let Some(q) = value(new, section, key).filter(|q| q > ceiling) else {
                continue;
            };
            let what = format!("{place}.{section}.{key} {q}");
            match value(before, section, key) {
                Some(was) if q <= was => warnings.push(format!(
                    "{what} stays above the ceiling {ceiling} of class {}: not raised by this resize",
                    class.name
                )),
                _ => problems.push(format!(
                    "{what} is above the ceiling {ceiling} of class {}",
                    class.name
                )),
            }
        }
    }
}

/// A quantity of `resources.<section>.<key>`; one that is no quantity is the API
/// server's to refuse.
fn value(resources: Option<&Resources<'_>>, section: &str, key: &str) -> Option<Quantity> {
    let r = resources?;
    let map: &QuantityMap<'_> = if section == "limits" {
        r.limits.as_ref()?
    } else {
        r.requests.as_ref()?
    };
    Quantity::parse(map.get(key)?).ok()
}
