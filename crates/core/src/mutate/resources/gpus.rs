//! GPUs belong to the `build` container of a GPU class, nowhere else: a class's GPU
//! ceiling holds for the whole pod. Called per container by `containers.rs`.

use super::{Entry, Place, Section, existing};
use crate::mutate::overrides::Overrides;
use crate::policy::{Policy, RunnerClass};
use crate::quantity::Quantity;

/// Resource-name prefixes of GPU vendors' device plugins (`nvidia.com/gpu`,
/// `nvidia.com/mig-1g.5gb`, `amd.com/gpu`, `gpu.intel.com/i915`). A GPU under any of
/// these names, or under a GPU resource any class of the policy names, is a GPU.
const GPU_PREFIXES: [&str; 3] = ["nvidia.com/", "amd.com/", "gpu.intel.com/"];

/// GPUs belong to the `build` container of a GPU class, `count` of them (or the `gpus`
/// override), at most the class `max`: that is then also the pod's total. Any GPU
/// resource anywhere else (another container, an init container, another vendor's name,
/// any container of a class without GPUs) is removed with a warning.
pub(super) fn plan(
    policy: &Policy,
    class: &RunnerClass,
    is_build: bool,
    overrides: &Overrides,
    at: &Place<'_, '_>,
    entries: &mut Vec<Entry>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let resources = at.container.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let name = at.name();
    let place = at.path();
    let granted = class
        .gpu
        .as_ref()
        .filter(|_| is_build)
        .map(|g| g.resource.as_str());
    let mut keys: Vec<&str> = limits
        .into_iter()
        .chain(requests)
        .flat_map(|m| m.iter().map(|(k, _)| k))
        .filter(|k| is_gpu(policy, k) && Some(*k) != granted)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let ex_limit = existing(limits, key, &place, Section::Limits)?;
        let ex_request = existing(requests, key, &place, Section::Requests)?;
        let why = match (&class.gpu, is_build) {
            (None, _) => format!("class {} has no GPUs", class.name),
            (Some(g), true) => format!("class {} gives GPUs as {}", class.name, g.resource),
            (Some(_), false) => format!(
                "the GPUs of class {} go to the build container only",
                class.name
            ),
        };
        for (section, ex) in [
            (Section::Limits, &ex_limit),
            (Section::Requests, &ex_request),
        ] {
            if let Some((q, _)) = ex {
                warnings.push(format!(
                    "{name}: {}.{key} {q} removed: {why}",
                    section.as_str()
                ));
            }
        }
        entries.push(Entry {
            key: key.to_string(),
            ex_limit,
            ex_request,
            limit: None,
            request: None,
        });
    }
    let (Some(gpu), Some(key)) = (class.gpu.as_ref(), granted) else {
        return Ok(());
    };
    let ex_limit = existing(limits, key, &place, Section::Limits)?;
    let ex_request = existing(requests, key, &place, Section::Requests)?;
    let ceiling = Quantity::from_units(i64::from(gpu.max));
    let count = match (overrides.gpus, ex_limit.as_ref(), ex_request.as_ref()) {
        (Some(n), _, _) => Quantity::from_units(i64::from(n)),
        (None, Some((q, _)), _) | (None, None, Some((q, _))) if *q > ceiling => {
            warnings.push(format!(
                "{name}: limits.{key} {q} lowered to the ceiling {ceiling} of class {}",
                class.name
            ));
            ceiling
        }
        (None, Some((q, _)), _) => *q,
        _ => Quantity::from_units(i64::from(gpu.count)),
    };
    // Extended resources need request == limit; a missing request defaults to it.
    let request = ex_request.as_ref().map(|_| count);
    entries.push(Entry {
        key: key.to_string(),
        ex_limit,
        ex_request,
        limit: Some(count),
        request,
    });
    Ok(())
}

fn is_gpu(policy: &Policy, key: &str) -> bool {
    GPU_PREFIXES.iter().any(|p| key.starts_with(p))
        || policy
            .classes
            .iter()
            .filter_map(|c| c.gpu.as_ref())
            .any(|g| g.resource == key)
}
