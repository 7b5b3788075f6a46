use super::*;

fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
    text
}

#[test]
fn enum_discriminants_index_the_handle_arrays() {
    for (i, outcome) in Outcome::ALL.iter().enumerate() {
        assert_eq!(*outcome as usize, i);
    }
    for (i, kind) in OverrideKind::ALL.iter().enumerate() {
        assert_eq!(*kind as usize, i);
    }
    for (i, result) in OVERRIDE_RESULTS.iter().enumerate() {
        assert_eq!(*result as usize, i);
    }
    for (i, reason) in Refused::ALL.iter().enumerate() {
        assert_eq!(*reason as usize, i);
    }
    for (i, change) in RefusedChange::ALL.iter().enumerate() {
        assert_eq!(*change as usize, i);
    }
}

#[test]
fn every_series_exists_at_zero_before_the_first_review() {
    let mut registry = new_registry();
    let metrics = Metrics::register(&mut registry);
    let _series = metrics.policy_series(&Policy::embedded());
    let text = encode(&registry);
    for line in [
        r#"ci_pod_webhook_requests_total{class="none",outcome="invalid"} 0"#,
        r#"ci_pod_webhook_requests_total{class="k8srunner",outcome="mutated"} 0"#,
        r#"ci_pod_webhook_overrides_total{override="cpu-limit",result="clamped"} 0"#,
        r#"ci_pod_webhook_policy_reloads_total{result="failure"} 0"#,
        r#"ci_pod_webhook_refused_changes_total{change="docker-socket",action="skipped"} 0"#,
        r#"ci_pod_webhook_refused_changes_total{change="runtime-class",action="denied"} 0"#,
        r#"ci_pod_webhook_certificate_reloads_total{result="success"} 0"#,
        r#"ci_pod_webhook_build_info{version=""#,
        r#"ci_pod_webhook_connections_refused_total{reason="address_handshakes"} 0"#,
        r#"ci_pod_webhook_connections_refused_total{reason="untrusted_handshakes"} 0"#,
        r#"ci_pod_webhook_connections_refused_total{reason="evicted_idle"} 0"#,
        "ci_pod_webhook_trusted_connections 0",
        r#"ci_pod_webhook_request_duration_seconds_bucket{le="0.00005",outcome="denied"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[test]
fn policy_info_names_the_policy_in_force_and_only_it() {
    let mut registry = new_registry();
    let metrics = Metrics::register(&mut registry);
    let first = Policy::embedded();
    let _series = metrics.policy_series(&first);
    let mut second = Policy::embedded();
    second.hash = "0123456789ab".to_string();
    let _series = metrics.policy_series(&second);
    let text = encode(&registry);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ci_pod_webhook_policy_info{"))
        .collect();
    assert_eq!(
        lines,
        [r#"ci_pod_webhook_policy_info{hash="0123456789ab"} 1"#]
    );
}

#[test]
fn class_limits_are_the_policy_s_in_cores_and_bytes() {
    let mut registry = new_registry();
    let metrics = Metrics::register(&mut registry);
    let _series = metrics.policy_series(&Policy::embedded());
    let text = encode(&registry);
    for line in [
        r#"ci_pod_webhook_class_limit{class="k8srunner",role="build",resource="cpu",unit="core"} 5.0"#,
        r#"ci_pod_webhook_class_limit{class="k8srunner",role="build",resource="memory",unit="byte"} 10737418240.0"#,
        r#"ci_pod_webhook_class_limit{class="k8srunner",role="services",resource="memory",unit="byte"} 1073741824.0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // k8srunner-large sets no CPU limit on build (`null`): no series.
    assert!(!text.contains(r#"class_limit{class="k8srunner-large",role="build",resource="cpu""#));
}
