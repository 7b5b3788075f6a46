use super::*;

#[test]
fn a_refused_policy_with_several_problems_is_logged_on_one_line() {
    let text = "defaultClass: nope\nclasses:\n  a:\n    gpu: { count: 0 }\n";
    let error =
        ci_pod_webhook_core::policy::Policy::parse(text, "policy.yaml").expect_err("invalid");
    let logged = one_line(&error.to_string());
    assert!(!logged.contains('\n'), "{logged}");
    assert!(
        logged.contains("policy.yaml:1:15: defaultClass"),
        "{logged}"
    );
    assert!(
        logged.contains("policy.yaml:4:19: classes.a.gpu.count"),
        "{logged}"
    );
    assert!(logged.contains("; policy.yaml:"), "{logged}");
}

#[tokio::test]
async fn only_changed_content_is_reported_and_unreadable_files_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    std::fs::write(&path, "one").expect("write");
    let (mut watched, first) = Watched::read_now(vec![path.clone()]).expect("read");
    assert_eq!(first, vec![b"one".to_vec()]);
    assert!(matches!(watched.look().await, Seen::Unchanged));

    std::fs::write(&path, "two").expect("write");
    assert!(matches!(watched.look().await, Seen::Changed(c) if c[0] == b"two"));
    assert!(matches!(watched.look().await, Seen::Unchanged));

    std::fs::remove_file(&path).expect("remove");
    assert!(matches!(watched.look().await, Seen::Unreadable(_)));
    assert!(matches!(watched.look().await, Seen::Unchanged));

    std::fs::write(&path, "two").expect("write");
    assert!(
        matches!(watched.look().await, Seen::Changed(_)),
        "back after being unreadable counts as a change"
    );
}
