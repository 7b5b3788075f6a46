use std::time::Duration;

use super::*;

#[tokio::test]
async fn bytes_are_held_until_the_request_is_done_and_others_wait_for_them() {
    let gauge = Gauge::default();
    let budget = Arc::new(BodyBudget::new(100, 50, false, gauge.clone()));
    let mut first = budget.hold(false);
    budget.take(&mut first, 60).await;
    budget.take(&mut first, 30).await;
    assert_eq!(gauge.get(), 90);

    let waiting = {
        let budget = budget.clone();
        tokio::spawn(async move {
            let mut second = budget.hold(false);
            budget.take(&mut second, 20).await;
            second
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "only 10 bytes are left");
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the second request gets its bytes once the first is done")
        .expect("join");
    assert_eq!(gauge.get(), 20);
    drop(second);
    assert_eq!(gauge.get(), 0);
}

#[tokio::test]
async fn with_trusted_peers_untrusted_requests_share_three_quarters_and_trusted_ones_the_rest() {
    let gauge = Gauge::default();
    let budget = Arc::new(BodyBudget::new(100, 20, true, gauge.clone()));
    let mut untrusted = budget.hold(false);
    budget.take(&mut untrusted, 75).await;
    let waiting = {
        let budget = budget.clone();
        tokio::spawn(async move {
            let mut another = budget.hold(false);
            budget.take(&mut another, 1).await;
            another
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "the untrusted share is spent");
    let mut trusted = budget.hold(true);
    tokio::time::timeout(Duration::from_secs(10), budget.take(&mut trusted, 25))
        .await
        .expect("a trusted request takes the rest at once");
    assert_eq!(gauge.get(), 100);
    drop(untrusted);
    let another = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the share is free again")
        .expect("join");
    assert_eq!(gauge.get(), 26);
    drop((another, trusted));
    assert_eq!(gauge.get(), 0);
}

#[test]
fn the_untrusted_share_always_fits_a_whole_body() {
    let budget = BodyBudget::new(100, 90, true, Gauge::default());
    let share = budget.untrusted.as_ref().expect("a share");
    assert_eq!(share.available_permits(), 90);
    let tiny = BodyBudget::new(10, 50, true, Gauge::default());
    assert_eq!(tiny.untrusted.expect("a share").available_permits(), 50);
}
