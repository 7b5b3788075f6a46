//! `classes.<name>.gpu`: the GPUs a class's `build` container gets (`count`) and the
//! most a `gpus` override may ask for (`max`), the extended resource that counts them,
//! and the placement a GPU node needs (node selector, tolerations, runtime class),
//! merged into the class's own. Paired with `gpus` in `mutate/`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Toleration;
use super::names::is_extended_resource;
use super::raw::{Ordered, RawToleration, S};
use super::validate::Validator;

const DEFAULT_GPU_RESOURCE: &str = "nvidia.com/gpu";

#[derive(Debug, Clone)]
pub struct Gpu {
    /// The extended resource (`nvidia.com/gpu`).
    pub resource: String,
    /// GPUs on `build` when the job asks for none.
    pub count: u32,
    /// Ceiling for the `gpus` override.
    pub max: u32,
    pub runtime_class_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGpu {
    pub resource: Option<S<String>>,
    pub count: Option<S<i64>>,
    pub max: Option<S<i64>>,
    pub runtime_class_name: Option<S<String>>,
    #[serde(default)]
    pub node_selector: Ordered<S<String>, S<String>>,
    #[serde(default)]
    pub tolerations: Vec<S<RawToleration>>,
}

impl Validator<'_> {
    /// The class's GPUs, and the node selector and tolerations the class adds for them.
    pub(super) fn gpu(
        &mut self,
        class: &str,
        raw: &S<RawGpu>,
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
}

#[cfg(test)]
mod tests;
