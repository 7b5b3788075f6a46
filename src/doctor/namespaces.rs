//! The namespaces that opted in, and whether what the policy adds is admissible there:
//! in socket mode, a namespace enforcing Pod Security `baseline` or `restricted` refuses
//! the Docker socket's hostPath volume, so the webhook leaves Docker out there.

use k8s_openapi::api::core::v1::Namespace;

use super::report::Check;
use ci_pod_webhook_core::mutate::admissible::{POD_SECURITY_ENFORCE, enforced_level};
use ci_pod_webhook_core::policy::{DockerMode, OPT_IN_VALUE, Policy};

pub const GROUP: &str = "namespaces";

/// Label values that opt a namespace in: `enabled`, and `warn` (policy reported, not
/// applied) for rollouts.
pub const OPT_IN_VALUES: [&str; 2] = [OPT_IN_VALUE, "warn"];

/// One line per namespace carrying the opt-in label (or one ‼ when none does).
pub fn namespaces(policy: &Policy, namespaces: Result<&[Namespace], &str>) -> Vec<Check> {
    let namespaces = match namespaces {
        Ok(list) => list,
        Err(error) => {
            return vec![
                Check::failure(GROUP, format!("cannot list namespaces: {error}"))
                    .fix("kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md)"),
            ];
        }
    };
    let opt_in = &policy.keys.opt_in;
    let socket = matches!(policy.docker.mode, DockerMode::Socket { .. });
    let mut checks = Vec::new();
    let mut opted_in = 0;
    for ns in namespaces {
        let name = ns.metadata.name.as_deref().unwrap_or("");
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        let Some(value) = labels.get(opt_in) else {
            continue;
        };
        if !OPT_IN_VALUES.contains(&value.as_str()) {
            checks.push(
                Check::warning(
                    GROUP,
                    format!("namespace {name}: {opt_in}={value} opts nothing in"),
                )
                .hint(format!(
                    "only {} opt a namespace in",
                    OPT_IN_VALUES.join(" or ")
                ))
                .fix(format!(
                    "kubectl label namespace {name} {opt_in}={OPT_IN_VALUE} --overwrite"
                )),
            );
            continue;
        }
        opted_in += 1;
        let class = labels.get(&policy.keys.runner_class);
        match class {
            Some(class) if policy.class(class).is_none() => checks.push(
                Check::warning(
                    GROUP,
                    format!(
                        "namespace {name}: {}={class} names no class of the policy",
                        policy.keys.runner_class
                    ),
                )
                .hint("its job pods get a class from the match rules or the default instead")
                .fix(format!(
                    "kubectl label namespace {name} {}=<class> --overwrite (classes: {})",
                    policy.keys.runner_class,
                    policy
                        .classes
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
            _ => checks.push(Check::ok(
                GROUP,
                format!(
                    "namespace {name}: opted in ({value}){}",
                    class.map_or(String::new(), |c| format!(", class {c}"))
                ),
            )),
        }
        if let Some(level) = enforced_level(&labels).filter(|l| socket && !l.allows_host_path()) {
            checks.push(
                Check::warning(
                    GROUP,
                    format!(
                        "namespace {name}: enforces Pod Security {}, so its job pods get no Docker socket",
                        level.as_str()
                    ),
                )
                .hint("socket mode adds a hostPath volume, which that level refuses; ci-pod-webhook leaves Docker out and warns")
                .fix(format!(
                    "kubectl label namespace {name} {POD_SECURITY_ENFORCE}=privileged --overwrite, or set docker.mode: tcp in the policy"
                )),
            );
        }
    }
    if opted_in == 0 {
        checks.push(
            Check::warning(
                GROUP,
                "no namespace is opted in: the webhook changes no pod",
            )
            .fix(format!(
                "kubectl label namespace <runner namespace> {opt_in}={OPT_IN_VALUE}"
            )),
        );
    }
    checks
}

#[cfg(test)]
mod tests;
