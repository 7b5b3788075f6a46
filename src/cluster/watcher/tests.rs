use super::*;

#[test]
fn the_throttle_warns_once_per_period_and_counts_the_rest() {
    let start = Instant::now();
    let mut throttle = Throttle::new(Duration::from_secs(30));
    assert_eq!(throttle.allow(start), Some(0));
    assert_eq!(throttle.allow(start + Duration::from_secs(1)), None);
    assert_eq!(throttle.allow(start + Duration::from_secs(29)), None);
    assert_eq!(throttle.allow(start + Duration::from_secs(30)), Some(2));
    assert_eq!(throttle.allow(start + Duration::from_secs(31)), None);
}

#[test]
fn a_recovery_is_announced_only_after_a_warned_failure() {
    let start = Instant::now();
    let mut failures = Failures::new("namespace", access::NAMESPACES);
    let error = || watcher::Error::NoResourceVersion;
    failures.record(&error(), start, "");
    failures.record(&error(), start + Duration::from_secs(1), "");
    assert_eq!((failures.consecutive, failures.warned), (2, true));
    failures.recovered();
    assert_eq!((failures.consecutive, failures.warned), (0, false));

    // Within the same period the next failure only reaches debug, so its
    // recovery is not announced either.
    failures.record(&error(), start + Duration::from_secs(2), "");
    assert_eq!((failures.consecutive, failures.warned), (1, false));
}

#[test]
fn an_expired_resource_version_is_routine_not_a_failure() {
    let mut failures = Failures::new("namespace", access::NAMESPACES);
    let expired = kube::core::Status::failure("too old resource version", "Expired").with_code(410);
    let delay = failures.record(
        &watcher::Error::WatchError(Box::new(expired)),
        Instant::now(),
        "",
    );
    assert_eq!((failures.consecutive, delay), (0, None));
}

#[test]
fn the_init_marker_before_a_refused_list_is_no_recovery_and_the_backoff_grows() {
    // What the watcher yields while every list gets 403: Init, error, Init, error…
    let start = Instant::now();
    let mut failures = Failures::new("namespace", access::NAMESPACES);
    let mut delays = Vec::new();
    for n in 0..8 {
        let init = Event::<()>::Init;
        if answered(&init) {
            failures.recovered();
        }
        let refused = watcher::Error::NoResourceVersion;
        delays.extend(failures.record(&refused, start + Duration::from_secs(n), ""));
    }
    assert_eq!(failures.consecutive, 8, "no recovery in between");
    let secs: Vec<f64> = delays.iter().map(Duration::as_secs_f64).collect();
    assert_eq!(secs, [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]);
    assert!(answered(&Event::<()>::InitDone));
}

#[test]
fn before_the_first_list_the_log_does_not_claim_a_last_known_state() {
    assert_eq!(serving(false, "no labels known yet"), "no labels known yet");
    assert!(serving(true, "no labels known yet").contains("last known state"));
}

fn status(code: u16, message: &str) -> Box<kube::core::Status> {
    Box::new(kube::core::Status::failure(message, "Forbidden").with_code(code))
}

#[test]
fn a_refused_list_says_what_the_account_needs_and_how_to_grant_it() {
    let forbidden = watcher::Error::InitialListFailed(kube::Error::Api(status(
        403,
        "namespaces is forbidden: User \"system:serviceaccount:ci-pod-webhook:ci-pod-webhook\" cannot list resource \"namespaces\"",
    )));
    let refusal = Refusal::of(&forbidden).expect("a refusal");
    let reason = refusal.reason("namespace", access::NAMESPACES);
    assert!(
        reason.starts_with(
            "the API server refuses the namespace watch (403: namespaces is forbidden: User"
        ),
        "{reason}"
    );
    assert!(
        reason.contains("needs get, list and watch on namespaces: apply ClusterRole and ClusterRoleBinding ci-pod-webhook"),
        "{reason}"
    );
    assert!(!reason.contains('\n'));
}

#[test]
fn credentials_the_api_server_does_not_accept_are_told_apart_from_missing_permissions() {
    let unauthorized =
        watcher::Error::WatchStartFailed(kube::Error::Api(status(401, "Unauthorized")));
    let reason = Refusal::of(&unauthorized)
        .expect("a refusal")
        .reason("namespace", access::NAMESPACES);
    assert!(reason.contains("(401: Unauthorized)"), "{reason}");
    assert!(reason.contains("automountServiceAccountToken"), "{reason}");
    // An outage or an expired version is no refusal.
    for other in [
        watcher::Error::NoResourceVersion,
        watcher::Error::WatchError(status(410, "too old")),
        watcher::Error::WatchFailed(kube::Error::Api(status(500, "etcd"))),
    ] {
        assert_eq!(Refusal::of(&other), None);
    }
}
