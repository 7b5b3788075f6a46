//! The namespaces that opted in, and whether what the policy adds is admissible there:
//! in socket mode, a namespace enforcing Pod Security `baseline` or `restricted` refuses
//! the Docker socket's hostPath volume, so the webhook leaves Docker out there.

use k8s_openapi::api::core::v1::Namespace;

use super::report::Check;
use crate::mutate::admissible::{POD_SECURITY_ENFORCE, enforced_level};
use crate::policy::{DockerMode, OPT_IN_VALUE, Policy};

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
mod tests {
    use super::*;
    use crate::doctor::report::Status;
    use crate::doctor::test_support::named;

    fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
        Namespace {
            metadata: named(name, labels),
            ..Namespace::default()
        }
    }

    fn statuses(checks: &[Check]) -> Vec<(Status, &str)> {
        checks
            .iter()
            .map(|c| (c.status, c.message.as_str()))
            .collect()
    }

    #[test]
    fn opted_in_namespaces_are_listed_with_their_class() {
        let policy = Policy::embedded();
        let list = [
            ns("gitlab", &[("ci.skao.int/pod-policy", "enabled")]),
            ns(
                "gpu",
                &[
                    ("ci.skao.int/pod-policy", "warn"),
                    ("ci.skao.int/runner-class", "k8srunner-gpu-v100"),
                ],
            ),
            ns("other", &[]),
        ];
        let checks = namespaces(&policy, Ok(&list));
        assert_eq!(
            statuses(&checks),
            [
                (Status::Ok, "namespace gitlab: opted in (enabled)"),
                (
                    Status::Ok,
                    "namespace gpu: opted in (warn), class k8srunner-gpu-v100"
                ),
            ]
        );
    }

    #[test]
    fn pod_security_baseline_in_socket_mode_is_a_warning_with_the_label_to_set() {
        let policy = Policy::embedded();
        let list = [ns(
            "ci",
            &[
                ("ci.skao.int/pod-policy", "enabled"),
                (POD_SECURITY_ENFORCE, "baseline"),
            ],
        )];
        let checks = namespaces(&policy, Ok(&list));
        assert_eq!(checks[1].status, Status::Warning);
        assert!(
            checks[1].message.contains("Pod Security baseline"),
            "{checks:?}"
        );
        assert!(
            checks[1]
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("enforce=privileged"))
        );
        let privileged = [ns(
            "ci",
            &[
                ("ci.skao.int/pod-policy", "enabled"),
                (POD_SECURITY_ENFORCE, "privileged"),
            ],
        )];
        assert_eq!(namespaces(&policy, Ok(&privileged)).len(), 1);
    }

    #[test]
    fn a_wrong_label_value_an_unknown_class_and_no_opt_in_are_warnings() {
        let policy = Policy::embedded();
        let list = [
            ns("a", &[("ci.skao.int/pod-policy", "true")]),
            ns(
                "b",
                &[
                    ("ci.skao.int/pod-policy", "enabled"),
                    ("ci.skao.int/runner-class", "huge"),
                ],
            ),
        ];
        let checks = namespaces(&policy, Ok(&list));
        assert_eq!(
            checks
                .iter()
                .filter(|c| c.status == Status::Warning)
                .count(),
            2,
            "{checks:?}"
        );
        assert!(checks[0].message.contains("opts nothing in"));
        assert!(checks[1].message.contains("names no class"));
        let none = namespaces(&policy, Ok(&list[..1]));
        assert!(
            none.last()
                .is_some_and(|c| c.message.contains("no namespace is opted in"))
        );
        let forbidden = namespaces(&policy, Err("namespaces is forbidden"));
        assert_eq!(forbidden[0].status, Status::Failure);
    }
}
