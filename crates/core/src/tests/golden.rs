//! Golden cases: realistic GitLab Runner job pods through the whole review path.
//!
//! Each case wraps a fixture pod in an AdmissionReview, answers it, applies the patch
//! with the `json-patch` crate and compares the response (warnings, audit annotations,
//! status), the decoded patch and the patched pod with `tests/golden/<case>.json`.
//! The expected files were generated with `UPDATE_GOLDEN=1 cargo test -p ci-pod-webhook-core tests::golden`
//! and then reviewed by hand; each case also asserts its key facts in code below, so a
//! wrong golden file cannot hide a wrong behaviour.

use std::collections::BTreeMap;

use crate::admission::{self, PodReview};
use crate::mutate::NamespaceFacts;
use crate::policy::Policy;
use serde_json::{Value, json};

use super::support;

struct Case {
    name: &'static str,
    fixture: &'static str,
    runner: Option<&'static str>,
    annotations: &'static [(&'static str, &'static str)],
    namespace_labels: Option<&'static [(&'static str, &'static str)]>,
    /// Remove every container's resources first, as from a runner with no limits set.
    strip_resources: bool,
    check: Box<dyn Fn(&Golden)>,
}

/// The fixture most cases start from.
const JOB_POD: &str = "gitlab-runner-17.9-job-pod.json";

impl Case {
    /// `fixture` as `runner` made it (with its resources, without override annotations),
    /// in a namespace the webhook's selector let through.
    fn new(
        name: &'static str,
        fixture: &'static str,
        runner: Option<&'static str>,
        check: impl Fn(&Golden) + 'static,
    ) -> Case {
        Case {
            name,
            fixture,
            runner,
            annotations: &[],
            namespace_labels: None,
            strip_resources: false,
            check: Box::new(check),
        }
    }

    /// The 17.9 job pod from `runner`.
    fn job(name: &'static str, runner: &'static str, check: impl Fn(&Golden) + 'static) -> Case {
        Case::new(name, JOB_POD, Some(runner), check)
    }

    fn annotated(self, annotations: &'static [(&'static str, &'static str)]) -> Case {
        Case {
            annotations,
            ..self
        }
    }

    fn in_namespace(self, labels: &'static [(&'static str, &'static str)]) -> Case {
        Case {
            namespace_labels: Some(labels),
            ..self
        }
    }

    fn without_resources(self) -> Case {
        Case {
            strip_resources: true,
            ..self
        }
    }
}

struct Golden {
    response: Value,
    pod: Option<Value>,
}

impl Golden {
    fn pod(&self) -> &Value {
        self.pod.as_ref().expect("an allowed, patched pod")
    }
    fn container(&self, name: &str) -> &Value {
        let pod = self.pod();
        ["containers", "initContainers"]
            .iter()
            .filter_map(|list| pod["spec"][list].as_array())
            .flatten()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    }
    fn limits(&self, container: &str) -> &Value {
        &self.container(container)["resources"]["limits"]
    }
    fn requests(&self, container: &str) -> &Value {
        &self.container(container)["resources"]["requests"]
    }
    fn docker_host(&self) -> Option<&str> {
        self.container("build")["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == "DOCKER_HOST")?["value"]
            .as_str()
    }
    fn warnings(&self) -> Vec<&str> {
        self.response["warnings"]
            .as_array()
            .map(|w| w.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
    fn denial(&self) -> &str {
        assert_eq!(self.response["allowed"], false, "expected a denial");
        self.response["status"]["message"]
            .as_str()
            .unwrap_or_default()
    }
}

fn check_default_class(g: &Golden) {
    assert_eq!(
        g.pod()["metadata"]["annotations"]["ci.skao.int/class"],
        "k8srunner"
    );
    assert_eq!(g.limits("build"), &json!({"cpu": "5", "memory": "10Gi"}));
    assert_eq!(g.docker_host(), Some("unix:///var/run/ci-dind/docker.sock"));
}

fn check_class(
    class: &'static str,
    cpu: Option<&'static str>,
    memory: &'static str,
    gpus: Option<&'static str>,
) -> impl Fn(&Golden) {
    move |g: &Golden| {
        assert_eq!(g.response["auditAnnotations"]["class"], class);
        assert_eq!(
            g.pod()["metadata"]["annotations"]["ci.skao.int/class"],
            class
        );
        assert_eq!(g.limits("build")["cpu"].as_str(), cpu, "{class} cpu limit");
        assert_eq!(g.limits("build")["memory"], memory, "{class} memory limit");
        assert_eq!(
            g.limits("build")["nvidia.com/gpu"].as_str(),
            gpus,
            "{class} GPUs"
        );
        assert_eq!(
            g.pod()["spec"]["nodeSelector"]["node-role.skatelescope.org/ci-worker"],
            "true"
        );
        // limitsEnv: the class by name, the GPU count on GPU classes only.
        let env = g.container("build")["env"].as_array().expect("env");
        let value = |name: &str| {
            env.iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        assert_eq!(value("JOB_RUNNER_CLASS"), Some(json!(class)));
        assert_eq!(value("JOB_GPUS"), gpus.map(|n| json!(n)));
        if gpus.is_some() {
            assert_eq!(g.pod()["spec"]["runtimeClassName"], "nvidia");
            assert_eq!(g.pod()["spec"]["nodeSelector"]["nvidia.com/gpu"], "true");
            let tolerations = g.pod()["spec"]["tolerations"]
                .as_array()
                .expect("tolerations");
            assert!(tolerations.contains(&json!({"key": "nvidia.com/gpu", "operator": "Exists"})));
        } else {
            assert!(g.pod()["spec"].get("runtimeClassName").is_none());
        }
        for helper in ["helper", "init-permissions", "svc-0"] {
            assert!(
                g.limits(helper).get("nvidia.com/gpu").is_none(),
                "{helper} gets no GPU"
            );
        }
    }
}

const OPTED_IN: &[(&str, &str)] = &[("ci.skao.int/pod-policy", "enabled")];

/// The job pod without resources from the runner of `class`: the class's own values.
fn class_case(
    name: &'static str,
    class: &'static str,
    cpu: Option<&'static str>,
    memory: &'static str,
    gpus: Option<&'static str>,
) -> Case {
    Case::job(name, class, check_class(class, cpu, memory, gpus)).without_resources()
}

/// The job pod from `runner` with an invalid override: denied, `message` in the status.
fn denied_case(
    name: &'static str,
    runner: &'static str,
    annotations: &'static [(&'static str, &'static str)],
    message: &'static str,
) -> Case {
    Case::job(name, runner, move |g| {
        assert!(g.denial().contains(message), "{message:?} in the denial")
    })
    .annotated(annotations)
}

fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "runner-16.5-default-class",
            "gitlab-runner-16.5-job-pod.json",
            None,
            |g| {
                check_default_class(g);
                // The runner's own docker.sock mount is left alone.
                let mounts = g.container("build")["volumeMounts"]
                    .as_array()
                    .expect("mounts");
                assert!(
                    mounts
                        .iter()
                        .any(|m| m["mountPath"] == "/var/run/docker.sock")
                );
                assert!(
                    mounts
                        .iter()
                        .any(|m| m["mountPath"] == "/var/run/ci-dind" && m["readOnly"] == true)
                );
                assert_eq!(
                    g.requests("build"),
                    &json!({"cpu": "1", "memory": "4Gi"}),
                    "existing requests kept"
                );
            },
        )
        .in_namespace(OPTED_IN),
        Case::new(
            "runner-16.1-generate-name",
            "gitlab-runner-16.1-generate-name.json",
            None,
            |g| {
                check_default_class(g);
                assert!(g.pod()["metadata"].get("name").is_none());
                assert_eq!(
                    g.pod()["metadata"]["generateName"],
                    "runner-xz3kq9ab-project-12345678-concurrent-3-"
                );
            },
        ),
        class_case("class-k8srunner", "k8srunner", Some("5"), "10Gi", None),
        class_case(
            "class-k8srunner-large",
            "k8srunner-large",
            None,
            "32Gi",
            None,
        ),
        class_case(
            "class-k8srunner-xlarge",
            "k8srunner-xlarge",
            None,
            "128Gi",
            None,
        ),
        class_case(
            "class-k8srunner-gpu-v100",
            "k8srunner-gpu-v100",
            Some("5"),
            "10Gi",
            Some("1"),
        ),
        class_case(
            "class-ska-k8srunner-dp",
            "ska-k8srunner-dp",
            Some("3"),
            "1Gi",
            None,
        ),
        Case::job(
            "class-k8srunner-large-with-runner-limits",
            "k8srunner-large",
            |g| {
                // The runner config's cpu limit goes (the class has none); its memory
                // limit, within the class, stays.
                assert_eq!(g.limits("build"), &json!({"memory": "10Gi"}));
                assert!(g.warnings().contains(
                    &"build: limits.cpu 5 removed: class k8srunner-large sets no cpu limit"
                ));
            },
        ),
        class_case(
            "class-ska-k8srunner-dp-gpu-a100",
            "ska-k8srunner-dp-gpu-a100",
            Some("5"),
            "10Gi",
            Some("1"),
        ),
        Case::new(
            "no-resources-no-services",
            "gitlab-runner-17.9-no-resources-no-services.json",
            Some("k8srunner"),
            |g| {
                assert_eq!(
                    g.container("build")["resources"],
                    json!({"limits": {"cpu": "5", "memory": "10Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}})
                );
                for c in ["helper", "init-permissions"] {
                    assert_eq!(
                        g.container(c)["resources"],
                        json!({"limits": {"cpu": "3", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
                    );
                }
                assert_eq!(
                    g.pod()["spec"]["nodeSelector"],
                    json!({"node-role.skatelescope.org/ci-worker": "true"})
                );
            },
        ),
        Case::new(
            "alias-services",
            "gitlab-runner-17.9-alias-services.json",
            Some("k8srunner"),
            |g| {
                // Services named after their alias are services: held to the ceiling,
                // or given the service values.
                assert_eq!(
                    g.container("db")["resources"],
                    json!({"limits": {"cpu": "8", "memory": "16Gi"}, "requests": {"cpu": "8", "memory": "16Gi"}})
                );
                assert_eq!(
                    g.container("cache")["resources"],
                    json!({"limits": {"cpu": "3", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
                );
            },
        ),
        Case::new(
            "uid-gid-collector",
            "gitlab-runner-17.9-uid-gid-collector.json",
            Some("k8srunner"),
            |g| {
                for c in ["build", "init-build-uid-gid-collector"] {
                    assert_eq!(
                        g.limits(c),
                        &json!({"cpu": "8", "memory": "16Gi"}),
                        "{c} lowered to the ceiling"
                    );
                }
            },
        ),
        Case::new(
            "pod-level-resources",
            "gitlab-runner-18.10-pod-level-resources.json",
            Some("k8srunner"),
            |g| {
                // The runner's pod-level limits are within the class: kept, and no
                // container gets a class limit above them.
                assert_eq!(
                    g.pod()["spec"]["resources"],
                    json!({"limits": {"cpu": "4", "memory": "8Gi"}})
                );
                for c in ["build", "helper", "svc-0", "init-permissions"] {
                    assert!(g.container(c).get("resources").is_none(), "{c}");
                }
                assert_eq!(g.docker_host(), Some("unix:///var/run/ci-dind/docker.sock"));
            },
        ),
        Case::new(
            "gpu-reach",
            "gitlab-runner-17.9-gpu-reach.json",
            Some("k8srunner-gpu-v100"),
            |g| {
                assert_eq!(g.limits("build")["nvidia.com/gpu"], "1");
                for c in ["helper", "svc-0", "init-permissions"] {
                    assert!(g.limits(c).get("nvidia.com/gpu").is_none(), "{c}");
                    assert!(g.requests(c).get("nvidia.com/gpu").is_none(), "{c}");
                }
                for c in ["build", "svc-0"] {
                    let env = g.container(c)["env"].as_array().expect("env");
                    assert!(
                        !env.iter()
                            .any(|e| e["name"].as_str().is_some_and(|n| n.starts_with("NVIDIA_"))),
                        "{c}"
                    );
                }
            },
        ),
        Case::job("namespace-not-opted-in", "k8srunner-xlarge", |g| {
            assert_eq!(g.response["allowed"], true);
            assert!(g.response.get("patch (decoded)").is_none(), "no patch");
            assert!(g.response.get("auditAnnotations").is_none());
            assert!(
                g.pod()["metadata"]["annotations"]
                    .get("ci.skao.int/class")
                    .is_none()
            );
        })
        .in_namespace(&[("team", "astro")]),
        Case::job(
            "namespace-class-label",
            "k8srunner-xlarge",
            check_class("ska-k8srunner-dp", Some("3"), "1Gi", None),
        )
        .in_namespace(&[
            ("ci.skao.int/pod-policy", "enabled"),
            ("ci.skao.int/runner-class", "ska-k8srunner-dp"),
        ])
        .without_resources(),
        Case::job("override-cpu-request", "k8srunner", |g| {
            assert_eq!(g.requests("build")["cpu"], "2500m")
        })
        .annotated(&[("ci.skao.int/cpu-request", "2500m")]),
        Case::job("override-cpu-limit", "k8srunner", |g| {
            assert_eq!(g.limits("build")["cpu"], "7")
        })
        .annotated(&[("ci.skao.int/cpu-limit", "7")]),
        Case::job("override-memory-request", "k8srunner", |g| {
            assert_eq!(g.requests("build")["memory"], "6Gi")
        })
        .annotated(&[("ci.skao.int/memory-request", "6Gi")]),
        Case::job("override-memory-limit", "k8srunner", |g| {
            assert_eq!(g.limits("build")["memory"], "2Gi");
            assert_eq!(
                g.requests("build")["memory"],
                "2Gi",
                "the 4Gi request follows the lowered limit"
            );
        })
        .annotated(&[("ci.skao.int/memory-limit", "2Gi")]),
        Case::job("override-clamped", "k8srunner", |g| {
            assert_eq!(g.limits("build"), &json!({"cpu": "8", "memory": "16Gi"}));
            assert_eq!(
                g.response["auditAnnotations"]["overrides"],
                "cpu-limit=8 (asked 64), memory-limit=16Gi (asked 1Ti)"
            );
            assert_eq!(g.warnings().len(), 2);
        })
        .annotated(&[
            ("ci.skao.int/cpu-limit", "64"),
            ("ci.skao.int/memory-limit", "1Ti"),
        ]),
        Case::job("override-gpus", "ska-k8srunner-dp-gpu-a100", |g| {
            assert_eq!(g.limits("build")["nvidia.com/gpu"], "3")
        })
        .annotated(&[("ci.skao.int/gpus", "3")]),
        Case::job("override-docker-disabled", "k8srunner", |g| {
            assert_eq!(g.docker_host(), None);
            assert!(
                !g.pod()["spec"]["volumes"]
                    .as_array()
                    .expect("volumes")
                    .iter()
                    .any(|v| v["name"] == "ci-dind")
            );
        })
        .annotated(&[("ci.skao.int/docker", "disabled")]),
        denied_case(
            "invalid-cpu-limit",
            "k8srunner",
            &[("ci.skao.int/cpu-limit", "lots")],
            "ci.skao.int/cpu-limit: \"lots\" is not a valid quantity",
        ),
        denied_case(
            "invalid-memory-request",
            "k8srunner",
            &[("ci.skao.int/memory-request", "-4Gi")],
            "ci.skao.int/memory-request: \"-4Gi\" must be greater than zero",
        ),
        denied_case(
            "invalid-cpu-request",
            "k8srunner",
            &[("ci.skao.int/cpu-request", "2 cores")],
            "ci.skao.int/cpu-request: \"2 cores\" is not a valid quantity; use a Kubernetes quantity such as 500m or 2",
        ),
        denied_case(
            "invalid-memory-limit",
            "k8srunner",
            &[("ci.skao.int/memory-limit", "8GB")],
            "ci.skao.int/memory-limit: \"8GB\" is not a valid quantity; use a Kubernetes quantity such as 512Mi or 4Gi",
        ),
        denied_case(
            "invalid-gpus",
            "ska-k8srunner-dp-gpu-a100",
            &[("ci.skao.int/gpus", "0")],
            "ci.skao.int/gpus: \"0\" is not a valid GPU count; use a whole number from 1 to 4",
        ),
        denied_case(
            "invalid-docker",
            "k8srunner",
            &[("ci.skao.int/docker", "no")],
            "the only accepted value is \"disabled\"",
        ),
        denied_case(
            "invalid-unknown-key",
            "k8srunner",
            &[("ci.skao.int/class-override", "k8srunner-xlarge")],
            "\"ci.skao.int/class-override\" is not a ci-pod-webhook override",
        ),
    ]
}

fn fixture(name: &str) -> Value {
    let path = support::root().join("tests/fixtures").join(name);
    serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("fixture JSON")
}

fn run(case: &Case, policy: &Policy) -> Golden {
    let mut pod = fixture(case.fixture);
    if case.strip_resources {
        for list in ["containers", "initContainers"] {
            for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
                c.as_object_mut().map(|c| c.remove("resources"));
            }
        }
    }
    if let Some(runner) = case.runner {
        pod["metadata"]["labels"]["manager.runner.gitlab.com/name"] = json!(runner);
    }
    for (k, v) in case.annotations {
        pod["metadata"]["annotations"][*k] = json!(v);
    }
    let uid = format!("golden-{}", case.name);
    let body = PodReview {
        uid: &uid,
        user_uid: Some("1c7e5a4e"),
        groups: &[
            "system:serviceaccounts",
            "system:serviceaccounts:gitlab",
            "system:authenticated",
        ],
        ..PodReview::create("gitlab", &pod).by("system:serviceaccount:gitlab:gitlab-runner")
    }
    .to_json();
    let parsed = admission::parse(&body).expect("readable review");
    let labels: Option<BTreeMap<String, String>> = case.namespace_labels.map(|l| {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    let facts = match &labels {
        Some(l) => NamespaceFacts::Labels(l),
        None => NamespaceFacts::TrustSelector,
    };
    let answer = admission::respond(policy, facts, &parsed).expect("answer");
    let out: Value = serde_json::from_slice(&answer.body).expect("response JSON");
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let mut response = out["response"].clone();
    assert_eq!(response["uid"], format!("golden-{}", case.name));
    let patched = support::apply_patch(&mut response, pod);
    Golden {
        response,
        pod: patched,
    }
}

#[test]
fn golden_cases_match_their_reviewed_expectations() {
    let policy = Policy::embedded();
    let mut failures = Vec::new();
    for case in cases() {
        let golden = run(&case, &policy);
        (case.check)(&golden);
        let actual = json!({"response": golden.response, "pod": golden.pod});
        failures.extend(support::check(case.name, &actual, &policy.hash));
    }
    support::assert_none_failed(&failures);
}
