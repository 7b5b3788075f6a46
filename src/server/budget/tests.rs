use std::time::Duration;

use super::*;

#[tokio::test]
async fn bytes_are_held_until_the_request_is_done_and_others_wait_for_them() {
    let gauge = Gauge::default();
    let budget = Arc::new(BodyBudget::new(100, 50, gauge.clone()));
    let mut first = budget.hold();
    budget.take(&mut first, 60).await;
    budget.take(&mut first, 30).await;
    assert_eq!(gauge.get(), 90);

    let waiting = {
        let budget = budget.clone();
        tokio::spawn(async move {
            let mut second = budget.hold();
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
