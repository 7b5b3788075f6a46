//! Issue 25, point 6: extended resources and hugepages are an allow-list. A container
//! keeps one only if its class grants it: the class's GPU resource on `build`, or a
//! resource the class names in `extendedResources` (with a maximum), also on `build`
//! only, so that the maximum is the pod's total whatever services the job declares.
//! Everything else is removed with a warning, wherever it is: containers, services,
//! init containers, the pod level.

use serde_json::{Value, json};

use super::pod_level_rules::assert_extended_resources_admissible;
use super::{DEFAULT, Req, container, job_pod, policy_from, run, run_with, with_runner};

/// What the job author asks for, on any container.
fn devices() -> Value {
    json!({
        "habana.ai/gaudi": "8",
        "aws.amazon.com/neuron": "4",
        "google.com/tpu": "4",
        "xilinx.com/fpga-xilinx_u250_gen3x16_xdma_shell_4_1": "1",
        "example.com/anything": "1",
        "hugepages-1Gi": "64Gi",
        "hugepages-2Mi": "1Gi"
    })
}

fn set_resources(pod: &mut Value, list: &str, name: &str, resources: Value) {
    let c = pod["spec"][list]
        .as_array_mut()
        .and_then(|cs| cs.iter_mut().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name}"));
    c["resources"] = resources;
}

#[test]
fn extended_resources_and_hugepages_outside_the_class_are_removed_everywhere() {
    for runner in ["k8srunner", "k8srunner-gpu-v100"] {
        let mut pod = with_runner(job_pod(), runner);
        for name in ["build", "helper", "svc-0"] {
            set_resources(
                &mut pod,
                "containers",
                name,
                json!({"limits": devices(), "requests": devices()}),
            );
        }
        set_resources(
            &mut pod,
            "initContainers",
            "init-permissions",
            json!({"limits": devices()}),
        );
        let out = run(&pod);
        for name in ["build", "helper", "svc-0", "init-permissions"] {
            let r = &container(out.pod(), name)["resources"];
            for section in ["limits", "requests"] {
                let keys: Vec<&String> = r[section]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                    .filter(|k| !matches!(k.as_str(), "cpu" | "memory" | "nvidia.com/gpu"))
                    .collect();
                assert!(keys.is_empty(), "{runner} {name}: {section} kept {keys:?}");
            }
        }
        let w = out.warnings().join("\n");
        assert!(
            w.contains(&format!(
                "svc-0: limits.habana.ai/gaudi 8 removed: class {runner} grants no habana.ai/gaudi"
            )),
            "{w}"
        );
        assert!(
            w.contains(&format!(
                "build: limits.hugepages-1Gi 64Gi removed: class {runner} grants no hugepages-1Gi"
            )),
            "{w}"
        );
        assert_extended_resources_admissible(out.pod());
    }
}

#[test]
fn pod_level_hugepages_outside_the_class_are_removed() {
    let mut pod = job_pod();
    pod["spec"]["resources"] = json!({"limits": {"cpu": "4", "hugepages-1Gi": "64Gi"}, "requests": {"hugepages-1Gi": "64Gi"}});
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["resources"],
        json!({"limits": {"cpu": "4"}, "requests": {}})
    );
    assert!(
        out.warnings()
            .contains(&"pod: spec.resources.limits.hugepages-1Gi 64Gi removed: class k8srunner grants no hugepages-1Gi".to_string()),
        "{:?}",
        out.warnings()
    );
}

const GRANTING: &str = "defaultClass: a
classes:
  a:
    build: { requests: { cpu: \"1\", memory: 1Gi }, limits: { cpu: \"2\", memory: 2Gi } }
    max: { cpu: \"4\", memory: 8Gi }
    extendedResources: { habana.ai/gaudi: 2, hugepages-2Mi: 1Gi }
";

#[test]
fn a_class_grants_extended_resources_to_build_up_to_its_maximum() {
    let policy = policy_from(GRANTING);
    let mut pod = job_pod();
    set_resources(
        &mut pod,
        "containers",
        "build",
        json!({"limits": {"habana.ai/gaudi": "8", "hugepages-2Mi": "4Gi", "hugepages-1Gi": "1Gi", "cpu": "1"},
               "requests": {"habana.ai/gaudi": "8"}}),
    );
    set_resources(
        &mut pod,
        "containers",
        "svc-0",
        json!({"limits": {"habana.ai/gaudi": "1", "hugepages-2Mi": "2Mi", "memory": "1Gi"}}),
    );
    let out = run_with(&policy, &Req::default(), &pod);
    let build = &container(out.pod(), "build")["resources"];
    assert_eq!(build["limits"]["habana.ai/gaudi"], "2");
    assert_eq!(build["requests"]["habana.ai/gaudi"], "2");
    assert_eq!(build["limits"]["hugepages-2Mi"], "1Gi");
    assert!(build["limits"].get("hugepages-1Gi").is_none());
    // A service cannot add to the pod's total: the maximum is build's alone.
    let svc = &container(out.pod(), "svc-0")["resources"];
    assert!(svc["limits"].get("habana.ai/gaudi").is_none(), "{svc}");
    assert!(svc["limits"].get("hugepages-2Mi").is_none(), "{svc}");
    let w = out.warnings().join("\n");
    assert!(
        w.contains("build: limits.habana.ai/gaudi 8 lowered to the maximum 2 of class a"),
        "{w}"
    );
    assert!(
        w.contains("svc-0: limits.habana.ai/gaudi 1 removed: the extended resources of class a go to the build container only"),
        "{w}"
    );
    assert_extended_resources_admissible(out.pod());
    // Within the maximum: kept as the job asked, nothing to say.
    let mut pod = job_pod();
    set_resources(
        &mut pod,
        "containers",
        "build",
        json!({"limits": {"habana.ai/gaudi": "1", "hugepages-2Mi": "2Mi"}}),
    );
    let out = run_with(&policy, &Req::default(), &pod);
    let build = &container(out.pod(), "build")["resources"];
    assert_eq!(build["limits"]["habana.ai/gaudi"], "1");
    assert_eq!(build["limits"]["hugepages-2Mi"], "2Mi");
    assert!(out.warnings().is_empty(), "{:?}", out.warnings());
}

#[test]
fn kept_hugepages_always_sit_beside_cpu_or_memory() {
    // No ceilings and no role values: nothing gives build cpu or memory, so hugepages
    // alone would make the API server refuse the pod ("HugePages require cpu or memory").
    let policy = policy_from(
        "defaultClass: a\nclasses:\n  a:\n    max: { cpu: null, memory: null }\n    extendedResources: { hugepages-2Mi: 1Gi }\n",
    );
    let mut pod = job_pod();
    set_resources(
        &mut pod,
        "containers",
        "build",
        json!({"limits": {"hugepages-2Mi": "2Mi"}}),
    );
    let out = run_with(&policy, &Req::default(), &pod);
    assert_extended_resources_admissible(out.pod());
}

#[test]
fn the_class_gpu_is_not_an_extended_resource_grant() {
    // The GPU class's own resource stays on build (gpus.rs); extendedResources cannot
    // name a GPU: check-policy refuses it.
    for (yaml, message) in [
        (
            "    extendedResources: { nvidia.com/gpu: 2 }\n",
            "classes.a.extendedResources: nvidia.com/gpu is a GPU resource; give GPUs with classes.a.gpu",
        ),
        (
            "    extendedResources: { habana.ai/gaudi: 1.5 }\n",
            "classes.a.extendedResources.habana.ai/gaudi: 1500m must be a whole number of devices, at least 1",
        ),
        (
            "    extendedResources: { hugepages-2Mi: 3Mi }\n",
            "classes.a.extendedResources.hugepages-2Mi: 3Mi must be a positive multiple of the page size 2Mi",
        ),
        (
            "    extendedResources: { cpu: 2 }\n",
            "classes.a.extendedResources: \"cpu\" is neither an extended resource name (such as habana.ai/gaudi) nor hugepages-<size>",
        ),
        (
            "    extendedResources: { hugepages-x: 1Gi }\n",
            "classes.a.extendedResources: \"hugepages-x\" is neither an extended resource name (such as habana.ai/gaudi) nor hugepages-<size>",
        ),
    ] {
        let text = format!(
            "defaultClass: a\nclasses:\n  a:\n    max: {{ cpu: \"4\", memory: 8Gi }}\n{yaml}"
        );
        let error = ci_policy_error(&text);
        assert!(error.contains(message), "{yaml}: {error}");
    }
    // The default policy still places its GPU as before.
    let mut pod = with_runner(job_pod(), "k8srunner-gpu-v100");
    set_resources(
        &mut pod,
        "containers",
        "build",
        json!({"limits": {"nvidia.com/gpu": "1"}}),
    );
    let out = run_with(&DEFAULT, &Req::default(), &pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
}

fn ci_policy_error(text: &str) -> String {
    match crate::policy::Policy::parse(text, "test-policy.yaml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}
