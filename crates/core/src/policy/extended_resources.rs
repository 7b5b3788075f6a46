//! `classes.<name>.extendedResources`: the extended resources (`habana.ai/gaudi`,
//! `xilinx.com/…`) and hugepages (`hugepages-2Mi`) a class grants its `build` container,
//! each with the most it may ask for. Everything not granted is removed from a job pod
//! (issue 25, point 6), so this is an allow-list: a class without the key grants none.
//! GPUs are not granted here but with `gpu` (they also need a placement). Paired with
//! `resources/extended_resources.rs` in `mutate/`.

use std::collections::BTreeMap;

use super::names::is_extended_resource;
use super::raw::{Ordered, S};
use super::validate::Validator;
use crate::quantity::Quantity;

/// Resource-name prefixes of GPU vendors' device plugins (`nvidia.com/gpu`,
/// `nvidia.com/mig-1g.5gb`, `amd.com/gpu`, `gpu.intel.com/i915`): a resource under one
/// of them is a GPU, given with a class's `gpu`, never with `extendedResources`.
pub const GPU_PREFIXES: [&str; 3] = ["nvidia.com/", "amd.com/", "gpu.intel.com/"];

/// The prefix of the hugepages resources, `hugepages-<page size>`.
pub const HUGEPAGES_PREFIX: &str = "hugepages-";

pub type RawExtendedResources = Ordered<S<String>, S<Quantity>>;

/// The page size of a `hugepages-<size>` resource name, if it is one.
pub fn hugepage_size(name: &str) -> Option<Quantity> {
    let size = Quantity::parse(name.strip_prefix(HUGEPAGES_PREFIX)?).ok()?;
    (size.is_positive() && size.as_whole_units().is_some()).then_some(size)
}

/// Whether `name` is one of the standard container resources the class bounds with
/// `max` (`cpu`, `memory`, `ephemeral-storage`): everything else in a container's
/// resources is an extended resource or hugepages, and on the allow-list.
pub fn is_standard(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
}

impl Validator<'_> {
    /// The class's grants: names checked, maxima whole devices (extended resources) or
    /// whole pages (hugepages), so that lowering a pod's value to one never makes a
    /// value the API server refuses.
    pub(super) fn extended_resources(
        &mut self,
        class: &str,
        raw: &RawExtendedResources,
        gpu: Option<&str>,
    ) -> BTreeMap<String, Quantity> {
        let what = format!("classes.{class}.extendedResources");
        let mut granted = BTreeMap::new();
        for (name, max) in &raw.0 {
            let n = name.value.as_str();
            let q = max.value;
            if GPU_PREFIXES.iter().any(|p| n.starts_with(p)) || Some(n) == gpu {
                self.problem(
                    name,
                    format!("{what}: {n} is a GPU resource; give GPUs with classes.{class}.gpu"),
                );
                continue;
            }
            if let Some(page) = hugepage_size(n) {
                let whole_pages = q.is_positive() && q.nanos() % page.nanos() == 0;
                if !whole_pages {
                    self.problem(
                        max,
                        format!(
                            "{what}.{n}: {q} must be a positive multiple of the page size {page}"
                        ),
                    );
                }
            } else if is_extended_resource(n) {
                if !(q.is_positive() && q.as_whole_units().is_some()) {
                    self.problem(
                        max,
                        format!("{what}.{n}: {q} must be a whole number of devices, at least 1"),
                    );
                }
            } else {
                self.problem(
                    name,
                    format!("{what}: {n:?} is neither an extended resource name (such as habana.ai/gaudi) nor hugepages-<size>"),
                );
                continue;
            }
            granted.insert(n.to_string(), q);
        }
        granted
    }
}

#[cfg(test)]
mod tests;
