//! Golden cases: realistic GitLab Runner job pods through the whole review path.
//!
//! Each case wraps a fixture pod in an AdmissionReview, answers it, applies the patch
//! with the `json-patch` crate and compares the response (warnings, audit annotations,
//! status), the decoded patch and the patched pod with `tests/golden/<case>.json`.
//! The expected files were generated with `UPDATE_GOLDEN=1 cargo test --test golden`
//! and then reviewed by hand; each case also asserts its key facts in code below, so a
//! wrong golden file cannot hide a wrong behaviour.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ci_pod_webhook::admission;
use ci_pod_webhook::mutate::NamespaceFacts;
use ci_pod_webhook::policy::Policy;
use serde_json::{Value, json};

#[path = "golden_support/mod.rs"]
mod golden_support;

struct Case {
    name: &'static str,
    fixture: &'static str,
    runner: Option<&'static str>,
    annotations: &'static [(&'static str, &'static str)],
    namespace_labels: Option<&'static [(&'static str, &'static str)]>,
    /// Remove every container's resources first, as from a runner with no limits set.
    strip_resources: bool,
    check: fn(&Golden),
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
    class: &str,
    cpu: Option<&str>,
    memory: &str,
    gpus: Option<&str>,
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

macro_rules! class_case {
    ($name:literal, $class:literal, $cpu:expr, $mem:literal, $gpus:expr) => {
        Case {
            name: $name,
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some($class),
            annotations: &[],
            namespace_labels: None,
            strip_resources: true,
            check: |g| check_class($class, $cpu, $mem, $gpus)(g),
        }
    };
}

const OPTED_IN: &[(&str, &str)] = &[("ci.skao.int/pod-policy", "enabled")];

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "runner-16.5-default-class",
            fixture: "gitlab-runner-16.5-job-pod.json",
            runner: None,
            annotations: &[],
            namespace_labels: Some(OPTED_IN),
            strip_resources: false,
            check: |g| {
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
        },
        Case {
            name: "runner-16.1-generate-name",
            fixture: "gitlab-runner-16.1-generate-name.json",
            runner: None,
            annotations: &[],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                check_default_class(g);
                assert!(g.pod()["metadata"].get("name").is_none());
                assert_eq!(
                    g.pod()["metadata"]["generateName"],
                    "runner-xz3kq9ab-project-12345678-concurrent-3-"
                );
            },
        },
        class_case!("class-k8srunner", "k8srunner", Some("5"), "10Gi", None),
        class_case!(
            "class-k8srunner-large",
            "k8srunner-large",
            None,
            "32Gi",
            None
        ),
        class_case!(
            "class-k8srunner-xlarge",
            "k8srunner-xlarge",
            None,
            "128Gi",
            None
        ),
        class_case!(
            "class-k8srunner-gpu-v100",
            "k8srunner-gpu-v100",
            Some("5"),
            "10Gi",
            Some("1")
        ),
        class_case!(
            "class-ska-k8srunner-dp",
            "ska-k8srunner-dp",
            Some("3"),
            "1Gi",
            None
        ),
        Case {
            name: "class-k8srunner-large-with-runner-limits",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner-large"),
            annotations: &[],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                // The runner config's cpu limit goes (the class has none); its memory
                // limit, within the class, stays.
                assert_eq!(g.limits("build"), &json!({"memory": "10Gi"}));
                assert!(g.warnings().contains(
                    &"build: limits.cpu 5 removed: class k8srunner-large sets no cpu limit"
                ));
            },
        },
        class_case!(
            "class-ska-k8srunner-dp-gpu-a100",
            "ska-k8srunner-dp-gpu-a100",
            Some("5"),
            "10Gi",
            Some("1")
        ),
        Case {
            name: "no-resources-no-services",
            fixture: "gitlab-runner-17.9-no-resources-no-services.json",
            runner: Some("k8srunner"),
            annotations: &[],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
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
        },
        Case {
            name: "alias-services",
            fixture: "gitlab-runner-17.9-alias-services.json",
            runner: Some("k8srunner"),
            annotations: &[],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
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
        },
        Case {
            name: "uid-gid-collector",
            fixture: "gitlab-runner-17.9-uid-gid-collector.json",
            runner: Some("k8srunner"),
            annotations: &[],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                for c in ["build", "init-build-uid-gid-collector"] {
                    assert_eq!(
                        g.limits(c),
                        &json!({"cpu": "8", "memory": "16Gi"}),
                        "{c} lowered to the ceiling"
                    );
                }
            },
        },
        Case {
            name: "pod-level-resources",
            fixture: "gitlab-runner-18.10-pod-level-resources.json",
            runner: Some("k8srunner"),
            annotations: &[],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
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
        },
        Case {
            name: "gpu-reach",
            fixture: "gitlab-runner-17.9-gpu-reach.json",
            runner: Some("k8srunner-gpu-v100"),
            annotations: &[],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
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
        },
        Case {
            name: "namespace-not-opted-in",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner-xlarge"),
            annotations: &[],
            namespace_labels: Some(&[("team", "astro")]),
            strip_resources: false,
            check: |g| {
                assert_eq!(g.response["allowed"], true);
                assert!(g.response.get("patch (decoded)").is_none(), "no patch");
                assert!(g.response.get("auditAnnotations").is_none());
                assert!(
                    g.pod()["metadata"]["annotations"]
                        .get("ci.skao.int/class")
                        .is_none()
                );
            },
        },
        Case {
            name: "namespace-class-label",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner-xlarge"),
            annotations: &[],
            namespace_labels: Some(&[
                ("ci.skao.int/pod-policy", "enabled"),
                ("ci.skao.int/runner-class", "ska-k8srunner-dp"),
            ]),
            strip_resources: true,
            check: |g| check_class("ska-k8srunner-dp", Some("3"), "1Gi", None)(g),
        },
        Case {
            name: "override-cpu-request",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/cpu-request", "2500m")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| assert_eq!(g.requests("build")["cpu"], "2500m"),
        },
        Case {
            name: "override-cpu-limit",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/cpu-limit", "7")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| assert_eq!(g.limits("build")["cpu"], "7"),
        },
        Case {
            name: "override-memory-request",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/memory-request", "6Gi")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| assert_eq!(g.requests("build")["memory"], "6Gi"),
        },
        Case {
            name: "override-memory-limit",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/memory-limit", "2Gi")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                assert_eq!(g.limits("build")["memory"], "2Gi");
                assert_eq!(
                    g.requests("build")["memory"],
                    "2Gi",
                    "the 4Gi request follows the lowered limit"
                );
            },
        },
        Case {
            name: "override-clamped",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[
                ("ci.skao.int/cpu-limit", "64"),
                ("ci.skao.int/memory-limit", "1Ti"),
            ],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                assert_eq!(g.limits("build"), &json!({"cpu": "8", "memory": "16Gi"}));
                assert_eq!(
                    g.response["auditAnnotations"]["overrides"],
                    "cpu-limit=8 (asked 64), memory-limit=16Gi (asked 1Ti)"
                );
                assert_eq!(g.warnings().len(), 2);
            },
        },
        Case {
            name: "override-gpus",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("ska-k8srunner-dp-gpu-a100"),
            annotations: &[("ci.skao.int/gpus", "3")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| assert_eq!(g.limits("build")["nvidia.com/gpu"], "3"),
        },
        Case {
            name: "override-docker-disabled",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/docker", "disabled")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                assert_eq!(g.docker_host(), None);
                assert!(
                    !g.pod()["spec"]["volumes"]
                        .as_array()
                        .expect("volumes")
                        .iter()
                        .any(|v| v["name"] == "ci-dind")
                );
            },
        },
        Case {
            name: "invalid-cpu-limit",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/cpu-limit", "lots")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                assert!(
                    g.denial()
                        .contains("ci.skao.int/cpu-limit: \"lots\" is not a valid quantity")
                )
            },
        },
        Case {
            name: "invalid-memory-request",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/memory-request", "-4Gi")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                assert!(
                    g.denial()
                        .contains("ci.skao.int/memory-request: \"-4Gi\" must be greater than zero")
                )
            },
        },
        Case {
            name: "invalid-cpu-request",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/cpu-request", "2 cores")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                assert!(g.denial().contains("ci.skao.int/cpu-request: \"2 cores\" is not a valid quantity; use a Kubernetes quantity such as 500m or 2"))
            },
        },
        Case {
            name: "invalid-memory-limit",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/memory-limit", "8GB")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                assert!(g.denial().contains("ci.skao.int/memory-limit: \"8GB\" is not a valid quantity; use a Kubernetes quantity such as 512Mi or 4Gi"))
            },
        },
        Case {
            name: "invalid-gpus",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("ska-k8srunner-dp-gpu-a100"),
            annotations: &[("ci.skao.int/gpus", "0")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                assert!(g.denial().contains("ci.skao.int/gpus: \"0\" is not a valid GPU count; use a whole number from 1 to 4"))
            },
        },
        Case {
            name: "invalid-docker",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/docker", "no")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                assert!(
                    g.denial()
                        .contains("the only accepted value is \"disabled\"")
                )
            },
        },
        Case {
            name: "invalid-unknown-key",
            fixture: "gitlab-runner-17.9-job-pod.json",
            runner: Some("k8srunner"),
            annotations: &[("ci.skao.int/class-override", "k8srunner-xlarge")],
            namespace_labels: None,
            strip_resources: false,
            check: |g| {
                assert!(
                    g.denial().contains(
                        "\"ci.skao.int/class-override\" is not a ci-pod-webhook override"
                    )
                )
            },
        },
    ]
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
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
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("golden-{}", case.name),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "gitlab",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:gitlab:gitlab-runner", "uid": "1c7e5a4e", "groups": ["system:serviceaccounts", "system:serviceaccounts:gitlab", "system:authenticated"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    });
    let body = serde_json::to_vec(&review).expect("json");
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
    let answer = admission::answer(policy, facts, &parsed).expect("answer");
    let out: Value = serde_json::from_slice(&answer.body).expect("response JSON");
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let mut response = out["response"].clone();
    assert_eq!(response["uid"], format!("golden-{}", case.name));
    let patched = golden_support::apply_patch(&mut response, pod);
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
        failures.extend(golden_support::check(case.name, &actual, &policy.hash));
    }
    golden_support::assert_none_failed(&failures);
}
