use super::stats::{bytes, millicores, nearest_rank, readable_cpu, readable_memory, times};
use super::*;
use ci_pod_webhook_core::policy::Policy;

const GI: i64 = 1 << 30;
const MI: i64 = 1 << 20;

fn q(text: &str) -> Quantity {
    Quantity::parse(text).expect("quantity")
}

#[test]
fn prometheus_floats_become_whole_bytes_and_millicores_rounded_up_without_float_noise() {
    assert_eq!(bytes(1_073_741_824.0), 1_073_741_824);
    assert_eq!(bytes(1.5), 2);
    assert_eq!(millicores(2.345_000_000_000_000_6), 2345);
    assert_eq!(millicores(2.344_999_999_999_999), 2345);
    assert_eq!(millicores(0.0101), 11);
    assert_eq!(millicores(f64::NAN), 0);
    assert_eq!(millicores(-1.0), 0);
}

#[test]
fn percentiles_are_nearest_rank_and_always_a_value_some_pod_had() {
    let hundred: Vec<i64> = (1..=100).collect();
    assert_eq!(nearest_rank(&hundred, 50), Some(50));
    assert_eq!(nearest_rank(&hundred, 99), Some(99));
    let seventy: Vec<i64> = (1..=70).collect();
    // ⌈0.99 × 70⌉ = 70: with fewer than 100 pods p99 is the maximum.
    assert_eq!(nearest_rank(&seventy, 99), Some(70));
    assert_eq!(nearest_rank(&[7], 50), Some(7));
    assert_eq!(nearest_rank(&[], 50), None);
}

#[test]
fn headroom_is_exact_and_suggestions_are_readable() {
    assert_eq!(times(5 * GI, q("1.2")), 6 * GI);
    assert_eq!(times(1000, q("1.25")), 1250);
    assert_eq!(times(3, q("1.5")), 5);
    assert_eq!(readable_memory(100 * MI).to_string(), "128Mi");
    assert_eq!(readable_memory(GI + GI / 10).to_string(), "1280Mi");
    assert_eq!(readable_memory(3 * GI + 300 * MI).to_string(), "3584Mi");
    assert_eq!(readable_memory(6 * GI + 100 * MI).to_string(), "7Gi");
    assert_eq!(readable_memory(10 * GI + 300 * MI).to_string(), "12Gi");
    assert_eq!(readable_memory(16 * GI).to_string(), "16Gi");
    assert_eq!(readable_cpu(450).to_string(), "500m");
    assert_eq!(readable_cpu(1200).to_string(), "1500m");
    assert_eq!(readable_cpu(4000).to_string(), "4");
    assert_eq!(readable_cpu(5300).to_string(), "6");
}

#[test]
fn containers_get_the_role_gitlab_runner_gives_them() {
    assert_eq!(role_of("build"), Role::Build);
    assert_eq!(role_of("init-build-uid-gid-collector"), Role::Build);
    assert_eq!(role_of("helper"), Role::Helper);
    assert_eq!(role_of("init-permissions"), Role::Helper);
    assert_eq!(role_of("svc-0"), Role::Service);
    assert_eq!(role_of("postgres"), Role::Service);
}

fn key(pod: &str) -> PodKey {
    PodKey {
        namespace: "gitlab".to_string(),
        pod: pod.to_string(),
    }
}

fn source() -> Source {
    Source {
        prometheus: "http://prometheus:9090".to_string(),
        since: "7d".to_string(),
        until: "2026-05-04T00:00:00Z".to_string(),
        headroom: Headroom(q("1.2")),
    }
}

/// Three k8srunner pods (build 5 CPU / 10Gi, services 1Gi, max 8 / 16Gi), one of them
/// with two services, and a pod the webhook did not export.
fn usage() -> Usage {
    let mut usage = Usage::default();
    for (pod, project) in [("a", Some("12")), ("b", None), ("c", Some("7"))] {
        usage.pods.insert(
            key(pod),
            PodInfo {
                class: "k8srunner".to_string(),
                project: project.map(str::to_string),
            },
        );
    }
    let peaks = [
        ("a", "build", 12.0 * GI as f64, 2.0),
        ("b", "build", 2.0 * GI as f64, 6.0),
        ("c", "build", 1.0 * GI as f64, 1.0),
        ("c", "svc-0", 100.0 * MI as f64, 0.1),
        ("c", "db", 1.5 * GI as f64, 0.2),
        ("not-a-job", "build", 100.0 * GI as f64, 30.0),
    ];
    for (pod, container, memory, cpu) in peaks {
        usage
            .memory
            .insert((key(pod), container.to_string()), memory);
        usage.cpu.insert((key(pod), container.to_string()), cpu);
    }
    usage.oom.insert((key("a"), "build".to_string()));
    usage
}

#[test]
fn a_report_has_every_class_and_role_with_limits_percentiles_and_pods_over() {
    let report = report(&Policy::embedded(), &usage(), source());
    let entry = |class: &str, container: &str| {
        report
            .classes
            .iter()
            .find(|e| e.class == class && e.container == container)
            .expect("an entry")
    };
    assert_eq!(report.classes.len(), Policy::embedded().classes.len() * 3);
    let build = entry("k8srunner", "build");
    assert_eq!(build.jobs, 3);
    assert_eq!(build.memory.limit, Some(q("10Gi")));
    assert_eq!(build.memory.p50, Some(q("2Gi")));
    assert_eq!(build.memory.max, Some(q("12Gi")));
    assert_eq!(
        (build.memory.over_limit, build.memory.oom_killed),
        (1, Some(1))
    );
    // p99 = 12Gi; × 1.2 = 14.4Gi → 16Gi, the class max: not lowered by it.
    assert_eq!(
        (build.memory.suggested, build.memory.capped),
        (Some(q("16Gi")), false)
    );
    assert_eq!(build.cpu.over_limit, 1);
    // p99 = 6; × 1.2 = 7.2 → 8, the max.
    assert_eq!(
        (build.cpu.suggested, build.cpu.capped),
        (Some(q("8")), false)
    );
    // Worst first: b's CPU is 120 % of 5, a's memory 120 % of 10Gi; a tie goes by name.
    let over: Vec<&str> = build.over.iter().map(|o| o.pod.as_str()).collect();
    assert_eq!(over, ["a", "b"]);
    assert_eq!(build.over[0].project.as_deref(), Some("12"));
    assert_eq!(build.over[1].project, None);
    // A pod's services peak is its highest service container.
    let services = entry("k8srunner", "services");
    assert_eq!((services.jobs, services.memory.max), (1, Some(q("1536Mi"))));
    assert_eq!(services.memory.over_limit, 1);
    let helper = entry("k8srunner", "helper");
    assert!(
        helper
            .no_data
            .as_deref()
            .is_some_and(|w| w.starts_with("no helper container"))
    );
    let none = entry("k8srunner-xlarge", "build");
    assert!(
        none.no_data
            .as_deref()
            .is_some_and(|w| w.starts_with("no ci_pod_webhook_job_pod_info"))
    );
    assert!(report.any_over_limit());
}

#[test]
fn the_cap_is_said_and_a_class_the_policy_lacks_is_kept() {
    let mut usage = Usage::default();
    usage.pods.insert(
        key("big"),
        PodInfo {
            class: "retired-class".to_string(),
            project: None,
        },
    );
    usage.pods.insert(
        key("huge"),
        PodInfo {
            class: "k8srunner".to_string(),
            project: None,
        },
    );
    usage
        .memory
        .insert((key("big"), "build".to_string()), 64.0 * GI as f64);
    usage
        .memory
        .insert((key("huge"), "build".to_string()), 15.0 * GI as f64);
    let report = report(&Policy::embedded(), &usage, source());
    let huge = &report.classes[0];
    assert_eq!(
        (huge.memory.suggested, huge.memory.capped),
        (Some(q("16Gi")), true)
    );
    assert_eq!(huge.cpu.p50, None);
    let retired = report
        .classes
        .iter()
        .find(|e| e.class == "retired-class")
        .expect("kept");
    assert!(!retired.in_policy);
    assert_eq!((retired.memory.limit, retired.memory.over_limit), (None, 0));
    let json = serde_json::to_value(retired).expect("json");
    assert_eq!(json["in_policy"], false);
    assert_eq!(json["memory"]["suggested"], "80Gi");
}

#[test]
fn the_json_has_the_shape_of_the_issue() {
    let report = report(&Policy::embedded(), &usage(), source());
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["prometheus"], "http://prometheus:9090");
    assert_eq!(json["since"], "7d");
    assert_eq!(json["headroom"], "1.2");
    let build = &json["classes"][0];
    assert_eq!(build["class"], "k8srunner");
    assert_eq!(build["container"], "build");
    assert_eq!(build["jobs"], 3);
    assert_eq!(build["memory"]["limit"], "10Gi");
    assert_eq!(build["memory"]["oom_killed"], 1);
    assert_eq!(build["cpu"]["limit"], "5");
    assert!(build["cpu"].get("oom_killed").is_none());
    assert_eq!(build["over"][0]["memory_peak"], "12Gi");
    assert_eq!(build["over"][0]["cpu_peak"], "2");
    assert!(build.get("no_data").is_none() && build.get("in_policy").is_none());
}

#[test]
fn windows_are_prometheus_durations() {
    assert_eq!(Window::parse("7d").map(|w| w.seconds), Ok(7 * 86_400));
    assert_eq!(Window::parse("1d12h").map(|w| w.seconds), Ok(36 * 3600));
    assert_eq!(Window::parse("2w").map(|w| w.seconds), Ok(14 * 86_400));
    assert_eq!(Window::parse("90s").map(|w| w.seconds), Ok(90));
    for bad in ["", "7", "d", "7x", "12h1d", "0d", "100ms"] {
        assert!(Window::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_window_is_cut_into_days_newest_first() {
    let spans = fetch::spans(1_000_000, 36 * 3600);
    assert_eq!(
        spans,
        [
            fetch::Span {
                end: 1_000_000,
                seconds: 86_400
            },
            fetch::Span {
                end: 1_000_000 - 86_400,
                seconds: 12 * 3600
            },
        ]
    );
    let span = spans[1];
    assert_eq!(
        fetch::cpu_query(span, r#"namespace=~"gitlab""#, 60),
        "max by (namespace, pod, container) (max_over_time(rate(container_cpu_usage_seconds_total{namespace=~\"gitlab\"}[60s])[43200s:30s]))"
    );
}

#[test]
fn headroom_is_written_as_a_decimal() {
    assert_eq!(Headroom(q("1.2")).to_string(), "1.2");
    assert_eq!(Headroom(q("1250m")).to_string(), "1.25");
    assert_eq!(Headroom(q("2")).to_string(), "2");
}
