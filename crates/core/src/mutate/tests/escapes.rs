//! The ways a job author tried to leave its class (issue 11), each closed: containers
//! under names the runner chooses from the job, init containers, pod-level resources,
//! GPUs outside `build`, the NVIDIA toolkit's env, and classes without ceilings. Every
//! allowed case is also checked to be idempotent (see `super::run_with`).

use serde_json::{Value, json};

use super::{
    DEFAULT, Req, annotate, container, env, job_pod, policy_from, run, run_with, with_runner,
};

use super::pod_level_rules::{assert_pod_level_resources_accepted, containers, quantity as q};

/// The API server's rules for resources: request within limit in every container, and
/// the pod-level rules (see `pod_level_rules`): a pod that breaks one is refused.
fn assert_api_server_accepts(pod: &Value) {
    for c in containers(pod, "containers")
        .iter()
        .chain(&containers(pod, "initContainers"))
    {
        for (key, limit) in c["resources"]["limits"].as_object().into_iter().flatten() {
            if let (Some(l), Some(r)) = (q(limit), q(&c["resources"]["requests"][key])) {
                assert!(r <= l, "{}: request {r} > limit {l} for {key}", c["name"]);
            }
        }
    }
    assert_pod_level_resources_accepted(pod);
}

fn set(pod: &mut Value, list: &str, name: &str, field: &str, value: Value) {
    let c = pod["spec"][list]
        .as_array_mut()
        .and_then(|cs| cs.iter_mut().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name}"));
    c[field] = value;
}

// ---- every container of a job pod has a role ----

#[test]
fn services_named_after_their_alias_get_the_service_values_and_ceiling() {
    let mut pod = job_pod();
    pod["spec"]["containers"] = json!([
        {"name": "build"}, {"name": "helper"},
        {"name": "db", "command": ["postgres"], "resources": {"limits": {"cpu": "64", "memory": "256Gi"}, "requests": {"cpu": "64", "memory": "256Gi"}}},
        {"name": "cache"}
    ]);
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "db")["resources"],
        json!({"limits": {"cpu": "8", "memory": "16Gi"}, "requests": {"cpu": "8", "memory": "16Gi"}})
    );
    assert_eq!(
        container(out.pod(), "cache")["resources"],
        json!({"limits": {"cpu": "3", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
    );
    assert!(
        out.warnings()
            .contains(&"db: limits.cpu 64 lowered to the ceiling 8 of class k8srunner".to_string())
    );
}

#[test]
fn look_alike_names_are_services() {
    let mut pod = job_pod();
    for name in ["helper-2", "svc-x", "init-permissions", "Build", "build "] {
        if let Some(c) = pod["spec"]["containers"].as_array_mut() {
            c.push(json!({"name": name, "resources": {"limits": {"cpu": "100"}}}));
        }
    }
    let out = run(&pod);
    for name in ["helper-2", "svc-x", "init-permissions", "Build", "build "] {
        assert_eq!(
            container(out.pod(), name)["resources"],
            json!({"limits": {"cpu": "8", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}),
            "{name}"
        );
    }
}

#[test]
fn a_second_build_container_is_a_service_without_overrides_or_gpus() {
    let mut pod = annotate(
        with_runner(job_pod(), "ska-k8srunner-dp-gpu-a100"),
        &[("ci.skao.int/cpu-limit", "8"), ("ci.skao.int/gpus", "4")],
    );
    if let Some(c) = pod["spec"]["containers"].as_array_mut() {
        c.push(json!({"name": "build", "resources": {"limits": {"nvidia.com/gpu": "4"}}}));
    }
    let out = run(&pod);
    let second = &out.pod()["spec"]["containers"][3]["resources"];
    assert_eq!(
        second,
        &json!({"limits": {"cpu": "3", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
    );
    let first = &out.pod()["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(
        first,
        &json!({"cpu": "8", "memory": "10Gi", "nvidia.com/gpu": "4"})
    );
}

#[test]
fn every_init_container_gets_a_role_and_its_ceilings() {
    let mut pod = job_pod();
    pod["spec"]["initContainers"] = json!([
        {"name": "init-permissions"},
        {"name": "init-build-uid-gid-collector", "image": "job-image", "resources": {"limits": {"cpu": "64", "memory": "256Gi"}, "requests": {"cpu": "64", "memory": "256Gi"}}},
        {"name": "init-other"}
    ]);
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "init-build-uid-gid-collector")["resources"],
        json!({"limits": {"cpu": "8", "memory": "16Gi"}, "requests": {"cpu": "8", "memory": "16Gi"}})
    );
    assert_eq!(
        container(out.pod(), "init-other")["resources"],
        json!({"limits": {"cpu": "5", "memory": "10Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}}),
        "other init containers take the build values"
    );
    assert_eq!(
        container(out.pod(), "init-permissions")["resources"]["limits"],
        json!({"cpu": "3", "memory": "1Gi"})
    );
}

// ---- pod-level spec.resources ----

#[test]
fn pod_level_values_above_the_class_ceiling_are_lowered_to_it() {
    let mut pod = job_pod();
    pod["spec"]["resources"] = json!({"requests": {"cpu": "30", "memory": "100Gi"}, "limits": {"cpu": "30", "memory": "100Gi"}});
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["resources"],
        json!({"requests": {"cpu": "8", "memory": "16Gi"}, "limits": {"cpu": "8", "memory": "16Gi"}})
    );
    assert!(
        out.warnings().contains(
            &"pod: spec.resources.limits.cpu 30 lowered to the ceiling 8 of class k8srunner"
                .to_string()
        )
    );
    assert_api_server_accepts(out.pod());
}

#[test]
fn the_runners_pod_level_limits_without_container_values_stay_a_valid_pod() {
    let mut pod = job_pod();
    pod["spec"]["resources"] = json!({"limits": {"cpu": "4", "memory": "8Gi"}});
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["resources"],
        json!({"limits": {"cpu": "4", "memory": "8Gi"}})
    );
    // The pod-level limit bounds every container: no class values above it.
    for name in ["build", "helper", "svc-0", "init-permissions"] {
        assert!(
            container(out.pod(), name).get("resources").is_none(),
            "{name}: {}",
            container(out.pod(), name)
        );
    }
    assert_api_server_accepts(out.pod());
}

#[test]
fn container_limits_above_the_pod_level_limit_are_lowered_to_it() {
    let mut pod = annotate(job_pod(), &[("ci.skao.int/cpu-limit", "8")]);
    pod["spec"]["resources"] = json!({"limits": {"cpu": "4", "memory": "8Gi"}});
    set(
        &mut pod,
        "containers",
        "build",
        "resources",
        json!({"limits": {"cpu": "5", "memory": "10Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}}),
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "4", "memory": "8Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}})
    );
    assert_api_server_accepts(out.pod());
}

#[test]
fn a_pod_level_request_alone_gets_the_ceiling_as_its_limit() {
    let mut pod = job_pod();
    pod["spec"]["resources"] = json!({"requests": {"cpu": "2"}});
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["resources"],
        json!({"requests": {"cpu": "2"}, "limits": {"cpu": "8"}})
    );
    // Memory has no pod-level value: the containers get the class memory values.
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"memory": "10Gi"}, "requests": {"memory": "2Gi"}})
    );
    assert_api_server_accepts(out.pod());
}

#[test]
fn container_requests_are_fitted_into_a_lowered_pod_level_request() {
    let mut pod = job_pod();
    pod["spec"]["resources"] = json!({"requests": {"cpu": "30"}, "limits": {"cpu": "30"}});
    set(
        &mut pod,
        "containers",
        "build",
        "resources",
        json!({"limits": {"cpu": "20"}, "requests": {"cpu": "20"}}),
    );
    set(
        &mut pod,
        "containers",
        "helper",
        "resources",
        json!({"limits": {"cpu": "1"}}),
    );
    set(
        &mut pod,
        "containers",
        "svc-0",
        "resources",
        json!({"requests": {"cpu": "500m"}}),
    );
    pod["spec"]["initContainers"] = json!([
        {"name": "init-permissions", "resources": {"requests": {"cpu": "12"}}},
        {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "2"}}}
    ]);
    let out = run(&pod);
    let cpu = |name: &str| container(out.pod(), name)["resources"]["requests"]["cpu"].clone();
    assert_eq!(cpu("init-permissions"), json!("8"));
    assert_eq!(cpu("proxy"), json!("2"), "a sidecar runs beside the others");
    assert_eq!(cpu("build"), json!("6"));
    assert_eq!(cpu("helper"), json!("0"));
    assert_eq!(cpu("svc-0"), json!("0"));
    assert_api_server_accepts(out.pod());
}

#[test]
fn pod_level_resources_on_an_unlimited_cpu_class_keep_the_runners_values() {
    let mut pod = with_runner(job_pod(), "k8srunner-large");
    pod["spec"]["resources"] = json!({"limits": {"cpu": "12", "memory": "64Gi"}});
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["resources"],
        json!({"limits": {"cpu": "12", "memory": "32Gi"}})
    );
    assert_api_server_accepts(out.pod());
}

// ---- GPUs ----

#[test]
fn gpus_outside_build_are_removed_and_build_keeps_at_most_the_class_max() {
    let mut pod = with_runner(job_pod(), "k8srunner-gpu-v100");
    let eight = json!({"limits": {"nvidia.com/gpu": "8"}, "requests": {"nvidia.com/gpu": "8"}});
    for name in ["build", "helper", "svc-0"] {
        set(&mut pod, "containers", name, "resources", eight.clone());
    }
    set(
        &mut pod,
        "initContainers",
        "init-permissions",
        "resources",
        eight,
    );
    let out = run(&pod);
    let gpus = |name: &str| {
        let r = &container(out.pod(), name)["resources"];
        (
            r["limits"]["nvidia.com/gpu"].clone(),
            r["requests"]["nvidia.com/gpu"].clone(),
        )
    };
    assert_eq!(gpus("build"), (json!("1"), json!("1")));
    for name in ["helper", "svc-0", "init-permissions"] {
        assert_eq!(gpus(name), (Value::Null, Value::Null), "{name}");
    }
    let w = out.warnings().join("\n");
    assert!(
        w.contains("svc-0: limits.nvidia.com/gpu 8 removed: the GPUs of class k8srunner-gpu-v100 go to the build container only"),
        "{w}"
    );
}

#[test]
fn gpus_on_a_class_without_gpus_are_removed_whatever_the_vendor() {
    let mut pod = job_pod();
    set(
        &mut pod,
        "containers",
        "build",
        "resources",
        json!({"limits": {"nvidia.com/gpu": "8", "amd.com/gpu": 2, "nvidia.com/mig-3g.20gb": "1", "cpu": "2"}}),
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"],
        json!({"cpu": "2", "memory": "10Gi"})
    );
    assert!(out.warnings().contains(
        &"build: limits.nvidia.com/gpu 8 removed: class k8srunner has no GPUs".to_string()
    ));
}

#[test]
fn other_gpu_resources_on_build_of_a_gpu_class_are_removed() {
    let mut pod = with_runner(job_pod(), "ska-k8srunner-dp-gpu-a100");
    set(
        &mut pod,
        "containers",
        "build",
        "resources",
        json!({"limits": {"nvidia.com/mig-7g.80gb": "4"}}),
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"],
        json!({"cpu": "5", "memory": "10Gi", "nvidia.com/gpu": "1"})
    );
}

// ---- the NVIDIA container toolkit's env ----

#[test]
fn nvidia_device_variables_set_by_the_job_are_removed_from_every_container() {
    for runner in ["k8srunner-gpu-v100", "k8srunner"] {
        let mut pod = with_runner(job_pod(), runner);
        set(
            &mut pod,
            "containers",
            "build",
            "env",
            json!([
                {"name": "CI", "value": "true"},
                {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"},
                {"name": "X", "value": "1"},
                {"name": "NVIDIA_VISIBLE_DEVICES", "value": "0,1,2,3"}
            ]),
        );
        set(
            &mut pod,
            "containers",
            "svc-0",
            "env",
            json!([{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]),
        );
        set(
            &mut pod,
            "initContainers",
            "init-permissions",
            "env",
            json!([
                {"name": "NVIDIA_VISIBLE_DEVICES", "valueFrom": {"configMapKeyRef": {"name": "jobs-own", "key": "devices"}}},
                {"name": "NVIDIA_MIG_CONFIG_DEVICES", "value": "all"}
            ]),
        );
        let out = run(&pod);
        let names = |c: &str| {
            env(out.pod(), c)
                .iter()
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
        };
        // What is left: the job's own variables, DOCKER_HOST and the class's limit
        // variables (limitsEnv), none of the NVIDIA ones.
        let kept: Vec<String> = names("build")
            .into_iter()
            .filter(|n| !n.starts_with("JOB_"))
            .collect();
        assert_eq!(kept, ["CI", "X", "DOCKER_HOST"], "{runner}");
        assert!(names("svc-0").is_empty(), "{runner}");
        assert!(names("init-permissions").is_empty(), "{runner}");
        assert!(out.warnings().contains(
            &"build: env NVIDIA_VISIBLE_DEVICES=\"all\" removed: it would choose the node's GPUs or driver features past what the class allocates".to_string()
        ));
    }
}

#[test]
fn cuda_driver_capabilities_stay_and_wider_ones_go() {
    for (value, kept) in [
        ("compute,utility", true),
        ("utility", true),
        ("compute, video", false),
        ("graphics", false),
    ] {
        let mut pod = job_pod();
        set(
            &mut pod,
            "containers",
            "build",
            "env",
            json!([{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": value}]),
        );
        let out = run(&pod);
        let present = env(out.pod(), "build")
            .iter()
            .any(|(n, _)| *n == "NVIDIA_DRIVER_CAPABILITIES");
        assert_eq!(present, kept, "{value}");
    }
}

/// Issue 25, point 7: every `NVIDIA_*` variable steers the toolkit (IMEX channels,
/// GPUDirect Storage, MOFED, skipping the CUDA version check, ...), not only the
/// device lists: all go, from every container, but CUDA's driver capabilities.
#[test]
fn every_nvidia_variable_a_job_sets_is_removed_but_cuda_driver_capabilities() {
    for runner in ["k8srunner-gpu-v100", "k8srunner"] {
        let mut pod = with_runner(job_pod(), runner);
        let job_env = json!([
            {"name": "NVIDIA_IMEX_CHANNELS", "value": "all"},
            {"name": "CI", "value": "true"},
            {"name": "NVIDIA_GDS", "value": "enabled"},
            {"name": "NVIDIA_MOFED", "value": "enabled"},
            {"name": "NVIDIA_DISABLE_REQUIRE", "value": "true"},
            {"name": "NVIDIA_REQUIRE_CUDA", "value": "cuda>=99"},
            {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"},
            {"name": "NVIDIA_NVSWITCH", "valueFrom": {"configMapKeyRef": {"name": "jobs-own", "key": "x"}}},
            {"name": "NVIDIA_", "value": "x"},
            {"name": "nvidia_visible_devices", "value": "all"}
        ]);
        set(&mut pod, "containers", "build", "env", job_env.clone());
        set(&mut pod, "containers", "svc-0", "env", job_env.clone());
        set(
            &mut pod,
            "initContainers",
            "init-permissions",
            "env",
            job_env,
        );
        let out = run(&pod);
        for c in ["build", "svc-0", "init-permissions"] {
            let left: Vec<&str> = env(out.pod(), c)
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| n.starts_with("NVIDIA") || n.starts_with("nvidia"))
                .collect();
            // The toolkit reads exact upper-case names: the lower-case one is inert.
            assert_eq!(
                left,
                ["NVIDIA_DRIVER_CAPABILITIES", "nvidia_visible_devices"],
                "{runner} {c}"
            );
        }
        assert!(out.warnings().contains(
            &"svc-0: env NVIDIA_IMEX_CHANNELS=\"all\" removed: it would choose the node's GPUs or driver features past what the class allocates".to_string()
        ), "{:?}", out.warnings());
    }
}

// ---- every class states its ceilings ----

#[test]
fn under_a_ceiling_every_container_leaves_with_a_limit_at_or_under_it() {
    let policy = policy_from(
        "defaultClass: a\nclasses:\n  a:\n    build: { requests: { cpu: \"1\" }, limits: { cpu: \"2\" } }\n    max: { cpu: \"4\", memory: 8Gi }\n",
    );
    let pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/cpu-limit", "1000"),
            ("ci.skao.int/memory-limit", "4Ti"),
        ],
    );
    let out = run_with(&policy, &Req::default(), &pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"],
        json!({"cpu": "4", "memory": "8Gi"})
    );
    for name in ["helper", "svc-0", "init-permissions"] {
        assert_eq!(
            container(out.pod(), name)["resources"]["limits"],
            json!({"cpu": "4", "memory": "8Gi"}),
            "{name}"
        );
    }
}

#[test]
fn the_embedded_policy_leaves_no_container_without_a_bounded_limit() {
    for class in &DEFAULT.classes {
        let out = run(&with_runner(job_pod(), &class.name));
        for (resource, max) in &class.max {
            for list in ["containers", "initContainers"] {
                for c in containers(out.pod(), list) {
                    let limit =
                        q(&c["resources"]["limits"][resource.as_str()]).unwrap_or_else(|| {
                            panic!("{}: {} has no {resource} limit", class.name, c["name"])
                        });
                    assert!(limit <= *max, "{}: {}", class.name, c["name"]);
                }
            }
        }
    }
}
