use super::*;

fn report() -> Report {
    Report {
        checks: vec![
            Check::ok("policy", "policy is valid"),
            Check::failure("classes", "class a: no node")
                .hint("every job pod would stay Pending")
                .fix("kubectl label node NODE k=v"),
            Check::warning("policy", "something odd"),
        ],
    }
}

#[test]
fn text_groups_checks_and_ends_with_a_verdict() {
    let text = report().text();
    assert_eq!(
        text,
        "policy\n------\n✔ policy is valid\n‼ something odd\n\n\
         classes\n-------\n✘ class a: no node\n    every job pod would stay Pending\n    fix: kubectl label node NODE k=v\n\n\
         Status check results are ✘ (1 ok, 1 warnings, 1 failures)\n"
    );
}

#[test]
fn json_names_statuses_in_words_and_counts_them() {
    let json = report().json();
    assert_eq!(json["checks"][1]["status"], "failure");
    assert_eq!(json["checks"][0].get("fix"), None);
    assert_eq!(
        json["summary"],
        serde_json::json!({"ok": 1, "warnings": 1, "failures": 1})
    );
    assert!(report().failed());
    assert!(
        !Report {
            checks: vec![Check::warning("g", "w")]
        }
        .failed()
    );
}
