//! A class's CPU limit against the CPUs of the nodes its job pods can land on. The
//! kubelet accepts a limit above what a node has (only requests are scheduled), but
//! `JOB_CPUS` (docs/job-limits.md) then promises the job more CPUs than exist there, and
//! `make -j$JOB_CPUS` oversubscribes the node: found on a real node (docs/e2e.md).

use k8s_openapi::api::core::v1::Node;

use super::{GROUP, name, names};
use ci_pod_webhook_core::policy::{Limit, ResourceName, Role, RunnerClass};
use ci_pod_webhook_core::quantity::Quantity;

/// The node's allocatable CPUs, in millicores; `None` when the node reports none.
fn allocatable_millis(node: &Node) -> Option<i64> {
    let quantity = node.status.as_ref()?.allocatable.as_ref()?.get("cpu")?;
    Quantity::parse(&quantity.0)
        .ok()
        .map(|q| q.milli_value_ceil())
}

/// ‼ when a CPU limit of `class` is above the allocatable CPUs of any of `usable`
/// (the nodes its job pods can land on), naming the role(s) and the nodes.
pub(super) fn above_its_nodes(class: &RunnerClass, usable: &[&Node]) -> Option<super::Check> {
    let roles = [
        (Role::Build, "build"),
        (Role::Helper, "helper"),
        (Role::Service, "services"),
    ];
    let limits: Vec<(&str, Quantity)> = roles
        .iter()
        .filter_map(|(role, role_name)| {
            match class.resources(*role).limits.get(&ResourceName::Cpu) {
                Some(Limit::Set(q)) => Some((*role_name, *q)),
                _ => None,
            }
        })
        .collect();
    let highest = limits.iter().map(|(_, q)| q.milli_value_ceil()).max()?;
    let mut smaller: Vec<(&Node, i64)> = usable
        .iter()
        .filter_map(|n| allocatable_millis(n).map(|m| (*n, m)))
        .filter(|(_, millis)| *millis < highest)
        .collect();
    if smaller.is_empty() {
        return None;
    }
    smaller.sort_by_key(|(n, millis)| (*millis, name(n).to_string()));
    let (smallest_node, smallest) = smaller[0];
    let above: Vec<String> = limits
        .iter()
        .filter(|(_, q)| q.milli_value_ceil() > smallest)
        .map(|(role, q)| format!("{role} {q}"))
        .collect();
    let cpus = Quantity::from_milli(smallest);
    Some(
        super::Check::warning(
            GROUP,
            format!(
                "class {}: CPU limit above what {} of its {} node(s) can give ({}: {cpus} allocatable CPUs; limits {})",
                class.name,
                smaller.len(),
                usable.len(),
                names(smaller.iter().map(|(n, _)| *n)),
                above.join(", ")
            ),
        )
        .hint(format!(
            "the limit is never reached on {}, and JOB_CPUS promises its jobs more CPUs than it has (make -j$JOB_CPUS oversubscribes it)",
            name(smallest_node)
        ))
        .fix(format!(
            "lower the CPU limits of class {} in the policy to at most {cpus}, or keep its jobs off the smaller nodes (the class's nodeSelector)",
            class.name
        )),
    )
}
