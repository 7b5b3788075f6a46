//! The NVIDIA container toolkit's environment variables, removed from the pod's env.
//!
//! With the toolkit's default `accept-nvidia-visible-devices-envvar-when-unprivileged =
//! true`, a container whose env says `NVIDIA_VISIBLE_DEVICES=all` sees every GPU of the
//! node, not the one the device plugin allocated (or none, on a class without GPUs); its
//! other variables reach further still (`NVIDIA_IMEX_CHANNELS`, `NVIDIA_GDS`,
//! `NVIDIA_MOFED`, `NVIDIA_DISABLE_REQUIRE`, …, and new ones with each release). A job
//! sets env through its CI variables, so every container and init container of a job
//! pod, on every class, and of a `gpuWorkloads` pod, loses every `NVIDIA_*` variable but
//! an `NVIDIA_DRIVER_CAPABILITIES` that asks for no more than `compute,utility` (what
//! CUDA images set); each removal is a warning.
//!
//! This closes the pod-spec path only: an image's own `ENV` is invisible at admission.
//! The node-side setting closes both (docs/escapes.md): the toolkit's
//! `accept-nvidia-visible-devices-envvar-when-unprivileged = false` with the device
//! plugin's `deviceListStrategy: volume-mounts` (toolkit
//! `accept-nvidia-visible-devices-as-volume-mounts = true`), or CDI.

use serde_json::Value;

use super::patch::{Patch, pointer};
use super::view::{NvidiaVar, Pod};
use crate::policy::ContainerList;

/// Driver capabilities a job may ask for: those of CUDA images.
const ALLOWED_CAPABILITIES: [&str; 2] = ["compute", "utility"];

/// Adds the removals. Call it after every other change to `env`: the operations name
/// entries by index, in descending order, so earlier appends (`env/-`) do not shift them.
pub(super) fn apply(pod: &Pod<'_>, patch: &mut Patch, warnings: &mut Vec<String>) {
    let spec = pod.spec();
    let lists = [
        (
            ContainerList::InitContainers,
            spec.init_containers.as_deref(),
        ),
        (ContainerList::Containers, spec.containers.as_deref()),
    ];
    for (list, containers) in lists {
        for (index, container) in containers.unwrap_or_default().iter().enumerate() {
            let Some(env) = container.env.as_ref() else {
                continue;
            };
            let index = index.to_string();
            for var in env.nvidia.iter().rev().filter(|v| removed(v)) {
                let shown = var
                    .value
                    .as_deref()
                    .map_or("(from valueFrom)".to_string(), super::shorten);
                warnings.push(format!(
                    "{}: env {}={shown} removed: it would choose the node's GPUs or driver features past what the class allocates",
                    container.name, var.name
                ));
                let at = var.index.to_string();
                patch.remove(
                    pointer(&["spec", list.as_str(), &index, "env", &at]),
                    var.value.clone().map_or(Value::Null, Value::String),
                );
            }
        }
    }
}

/// Whether the variable goes: every one but CUDA's driver capabilities.
pub(super) fn removed(var: &NvidiaVar) -> bool {
    if var.name != "NVIDIA_DRIVER_CAPABILITIES" {
        return true;
    }
    let Some(value) = var.value.as_deref() else {
        return true;
    };
    !value
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .all(|c| ALLOWED_CAPABILITIES.contains(&c))
}
