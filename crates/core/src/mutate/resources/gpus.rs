//! GPUs belong to the `build` container of a GPU class, nowhere else: a class's GPU
//! ceiling holds for the whole pod. Called per container by `containers.rs`; GPUs
//! anywhere else are removed with every other resource the class does not grant
//! (`extended_resources.rs`).

use super::{Entry, Place, Section, existing, granted_gpu};
use crate::mutate::overrides::Overrides;
use crate::policy::RunnerClass;
use crate::quantity::Quantity;

/// GPUs belong to the `build` container of a GPU class, `count` of them (or the `gpus`
/// override), at most the class `max`: that is then also the pod's total.
pub(super) fn plan(
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
    let Some(gpu) = granted_gpu(class, is_build) else {
        return Ok(());
    };
    let key = gpu.resource.as_str();
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
