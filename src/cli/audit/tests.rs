use super::*;

fn row(namespace: &str, pod: &str, class: &str, verdicts: &[Verdict], details: &[&str]) -> Row {
    Row {
        namespace: namespace.into(),
        pod: pod.into(),
        judgement: Judgement {
            class: class.into(),
            reason: "defaultClass".into(),
            mode: "enforce",
            verdicts: verdicts.to_vec(),
            details: details.iter().map(|d| (*d).to_string()).collect(),
        },
    }
}

#[test]
fn the_table_counts_per_class_then_lists_the_pods_that_are_not_ok() {
    let rows = vec![
        row("ci", "a", "k8srunner", &[Verdict::Ok], &[]),
        row(
            "ci",
            "b",
            "k8srunner",
            &[Verdict::Unpolicied, Verdict::WouldDeny],
            &["no"],
        ),
        row(
            "ci",
            "c",
            "k8srunner-large",
            &[Verdict::Drift],
            &["x: 5 → 4"],
        ),
    ];
    let mut out = Vec::new();
    write_table(&rows, &mut out).expect("writes");
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "CLASS             PODS   OK   DRIFT   UNPOLICIED   WOULD-MUTATE   WOULD-DENY"
    );
    // A pod with two verdicts counts under both.
    assert_eq!(
        lines[1],
        "k8srunner         2      1    0       1            0              1"
    );
    assert_eq!(
        lines[2],
        "k8srunner-large   1      0    1       0            0              0"
    );
    assert!(lines[4].starts_with("NAMESPACE"));
    assert!(lines[5].contains("unpolicied,would-deny   no"), "{text}");
    assert!(
        lines[6].ends_with("drift                   x: 5 → 4"),
        "{text}"
    );
}

#[test]
fn the_json_report_has_a_summary_and_every_pod() {
    let rows = vec![row(
        "ci",
        "b",
        "k8srunner",
        &[Verdict::Unpolicied, Verdict::WouldDeny],
        &["no"],
    )];
    let json = serde_json::to_value(report(&rows)).expect("json");
    assert_eq!(json["summary"]["k8srunner"]["pods"], 1);
    assert_eq!(json["summary"]["k8srunner"]["would-deny"], 1);
    assert_eq!(json["summary"]["k8srunner"]["unpolicied"], 1);
    assert_eq!(json["summary"]["k8srunner"]["would-mutate"], 0);
    assert_eq!(json["summary"]["k8srunner"]["ok"], 0);
    assert_eq!(
        json["pods"][0]["verdicts"],
        serde_json::json!(["unpolicied", "would-deny"])
    );
    assert_eq!(json["pods"][0]["namespace"], "ci");
    assert_eq!(json["pods"][0]["details"][0], "no");
}
