use super::*;

fn glob(p: &str) -> NameGlob {
    NameGlob::parse(p).expect("valid glob")
}

#[test]
fn globs_match_whole_names() {
    for (pattern, name, expected) in [
        ("ci-*", "ci-ska-tango-1234", true),
        ("ci-*", "ci-", true),
        ("ci-*", "xci-a", false),
        ("ci-*", "ci", false),
        ("integration-*", "integration-dp-7", true),
        ("*-gpu", "dp-gpu", true),
        ("*-gpu", "dp-gpu-2", false),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("a*b*c", "abcbc", true),
        ("ci-?", "ci-1", true),
        ("ci-?", "ci-12", false),
        ("*", "anything", true),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ] {
        assert_eq!(glob(pattern).matches(name), expected, "{pattern} ~ {name}");
    }
}

#[test]
fn globs_are_namespace_characters_only() {
    for bad in ["", "CI-*", "ci_*", "ci/*", "ci-[0-9]", &"a".repeat(64)] {
        assert!(NameGlob::parse(bad).is_err(), "{bad:?}");
    }
}

fn parse(section: &str) -> Result<crate::policy::Policy, String> {
    let yaml = format!(
        "defaultClass: a\nclasses:\n  a: {{ max: {{ cpu: null, memory: null }} }}\ngpuWorkloads:\n{section}"
    );
    crate::policy::Policy::parse(&yaml, "p.yaml").map_err(|e| e.to_string())
}

#[test]
fn the_section_reads_as_the_issue_writes_it() {
    let policy = parse(
        "  namespaces:\n    names: [\"ci-*\", \"integration-*\"]\n    labels: { ci.skao.int/gpu-workloads: enabled }\n  resource: nvidia.com/gpu\n  nodeSelector: { nvidia.com/gpu: \"true\" }\n  tolerations: [ { key: nvidia.com/gpu, operator: Exists } ]\n  runtimeClassName: nvidia\n",
    )
    .expect("valid");
    let g = policy.gpu_workloads.expect("on");
    assert_eq!(g.names, [glob("ci-*"), glob("integration-*")]);
    assert_eq!(
        g.labels
            .get("ci.skao.int/gpu-workloads")
            .map(String::as_str),
        Some("enabled")
    );
    assert_eq!(g.resources, [ResourcePattern("nvidia.com/gpu".to_string())]);
    assert_eq!(g.placement.name, GPU_WORKLOADS_CLASS);
    assert_eq!(g.placement.node_selector.len(), 1);
    assert_eq!(g.placement.tolerations.len(), 1);
    let runtime = g.placement.gpu.and_then(|gpu| gpu.runtime_class_name);
    assert_eq!(runtime.as_deref(), Some("nvidia"));
    let absent = crate::policy::Policy::parse(
        "defaultClass: a\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
        "p",
    )
    .expect("valid");
    assert!(absent.gpu_workloads.is_none(), "absent means off");
}

#[test]
fn mistakes_are_named_with_their_line() {
    for (section, expected) in [
        (
            "  namespaces: {}\n",
            "p.yaml:5:15: gpuWorkloads.namespaces: give names",
        ),
        (
            "  namespaces: { names: [CI-*] }\n",
            "gpuWorkloads.namespaces.names: \"CI-*\" is not a namespace name pattern",
        ),
        (
            "  namespaces: { labels: { \"a b\": c } }\n",
            "gpuWorkloads.namespaces.labels: \"a b\" is not a valid label key",
        ),
        (
            "  namespaces: { names: [x] }\n  resource: gpu\n",
            "gpuWorkloads.resource: \"gpu\" is not an extended resource name",
        ),
        (
            "  namespaces: { names: [x] }\n  runtimeClassName: NVIDIA\n",
            "gpuWorkloads.runtimeClassName: \"NVIDIA\" is not a valid RuntimeClass name",
        ),
        (
            "  namespaces: { names: [x] }\n  tolerations: [ { operator: Equal } ]\n",
            "gpuWorkloads.tolerations[0]: an empty key needs operator Exists",
        ),
        (
            "  namespaces: { names: [x] }\n  nodeSelectors: {}\n",
            "unknown field",
        ),
    ] {
        let err = parse(section).expect_err(section);
        assert!(err.contains(expected), "{section}: {err}");
    }
    let taken = crate::policy::Policy::parse(
        "defaultClass: gpu-workloads\nclasses:\n  gpu-workloads: {}\ngpuWorkloads: { namespaces: { names: [x] } }\n",
        "p.yaml",
    )
    .expect_err("class name taken")
    .to_string();
    assert!(
        taken
            .contains("p.yaml:3:3: classes: \"gpu-workloads\" is the name gpuWorkloads pods go by"),
        "{taken}"
    );
}

#[test]
fn the_webhook_namespace_joins_the_never_list() {
    let mut policy = parse("  namespaces: { names: ['*'] }\n").expect("valid");
    policy.set_webhook_namespace("ci-pod-webhook");
    let g = policy.gpu_workloads.expect("on");
    assert!(g.name_match("ci-pod-webhook").is_none());
    assert!(g.name_match("ci-pod-webhook-2").is_some());
}

#[test]
fn system_namespaces_are_never_selected_even_by_a_catch_all() {
    let g = GpuWorkloads {
        names: vec![glob("*")],
        labels: BTreeMap::from([("a".to_string(), "b".to_string())]),
        never: SYSTEM_NAMESPACES.iter().map(|n| n.to_string()).collect(),
        resources: vec![ResourcePattern("nvidia.com/gpu".to_string())],
        placement: RunnerClass::default(),
    };
    for ns in SYSTEM_NAMESPACES {
        assert!(g.name_match(ns).is_none(), "{ns}");
        assert!(!g.labels_may_select(ns), "{ns}");
    }
    assert!(g.name_match("").is_none());
    assert_eq!(g.name_match("ci-x").map(NameGlob::as_str), Some("*"));
}

#[test]
fn resources_are_names_or_prefixes_and_resource_is_one_of_them() {
    let parse = |section: &str| parse(&format!("  namespaces: {{ names: [ci-*] }}\n{section}"));
    let g = parse("  resources: [nvidia.com/gpu, \"nvidia.com/mig-*\", amd.com/gpu]\n")
        .expect("valid")
        .gpu_workloads
        .expect("on");
    let names: Vec<&str> = g.resources.iter().map(|r| r.as_str()).collect();
    assert_eq!(names, ["nvidia.com/gpu", "nvidia.com/mig-*", "amd.com/gpu"]);
    assert!(g.asks_for("nvidia.com/mig-1g.5gb") && g.asks_for("amd.com/gpu"));
    assert!(!g.asks_for("nvidia.com/gpu.shared") && !g.asks_for("amd.com/gpu-x"));
    // `resource`, one name, as before; neither: NVIDIA GPUs and MIG profiles.
    let one = parse("  resource: example.com/accel\n")
        .expect("valid")
        .gpu_workloads
        .expect("on");
    assert_eq!(one.resources.len(), 1);
    assert!(one.asks_for("example.com/accel"));
    let default = parse("").expect("valid").gpu_workloads.expect("on");
    assert!(default.asks_for("nvidia.com/gpu") && default.asks_for("nvidia.com/mig-2g.10gb"));
    for (section, says) in [
        (
            "  resource: nvidia.com/gpu\n  resources: [amd.com/gpu]\n",
            "gpuWorkloads: give resource or resources, not both",
        ),
        (
            "  resources: [\"*\"]\n",
            "gpuWorkloads.resources: \"*\" is neither an extended resource name",
        ),
        (
            "  resources: [\"nvidia.com/*-gpu\"]\n",
            "gpuWorkloads.resources: \"nvidia.com/*-gpu\" is neither",
        ),
        (
            "  resources: []\n",
            "gpuWorkloads.resources: give at least one",
        ),
    ] {
        let error = parse(section).expect_err(section);
        assert!(error.contains(says), "{section}: {error}");
    }
}

#[test]
fn conditions_must_look_for_every_resource() {
    let g = parse("  namespaces: { names: [ci-*] }\n  resources: [nvidia.com/gpu, \"nvidia.com/mig-*\", amd.com/gpu]\n")
        .expect("valid")
        .gpu_workloads
        .expect("on");
    let missing = |expressions: &[&str]| -> Vec<String> {
        g.missing_from_conditions(expressions)
            .iter()
            .map(|r| r.as_str().to_string())
            .collect()
    };
    let before = "has(c.resources.limits) && 'nvidia.com/gpu' in c.resources.limits";
    assert_eq!(missing(&[before]), ["nvidia.com/mig-*", "amd.com/gpu"]);
    let now = "c.resources.limits.exists(r, r == 'nvidia.com/gpu' || r.startsWith('nvidia.com/mig-') || r == 'amd.com/gpu')";
    assert!(missing(&["!has(object.metadata.annotations)", now]).is_empty());
    // A wider prefix covers names and narrower prefixes; a narrower one does not.
    assert!(missing(&["r.startsWith('nvidia.com/') || r.startsWith('amd.com/')"]).is_empty());
    assert_eq!(
        missing(&[
            "r.startsWith('nvidia.com/mig-1g') || r == 'nvidia.com/gpu' || r == 'amd.com/gpu'"
        ]),
        ["nvidia.com/mig-*"]
    );
}
