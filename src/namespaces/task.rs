//! The background task that keeps the mirror in step with the cluster.
//!
//! `kube`'s watcher lists the namespaces, then watches from the list's resourceVersion,
//! resuming after a dropped connection and relisting when the version has expired.
//! Retries are spaced out here (0.8 s doubling to 30 s, as client-go does), not by
//! kube's `default_backoff`: that one resets on any event, and the watcher emits an
//! `Init` marker before every list attempt, so a list refused with 403 was retried
//! about once a second and each marker was taken for a recovery. Only an answer from
//! the API server (a listed namespace, the end of a list, a watch event) counts as one.
//! While it retries, the mirror keeps answering with what it last knew.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event, watcher};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::mirror::{Applied, Writer};

/// A failing watch is reported at `warn` at most this often; the rest go to `debug`.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(30);

/// Runs until `stop` is cancelled.
pub(super) async fn run(
    api: Api<PartialObjectMeta<Namespace>>,
    mut mirror: Writer,
    ready: watch::Sender<bool>,
    stop: CancellationToken,
) {
    // `Api<PartialObjectMeta<Namespace>>` asks for `PartialObjectMetadata(List)`, so
    // only metadata crosses the wire (what the deprecated `metadata_watcher` did).
    let events = watcher(api, watcher::Config::default());
    let mut events = std::pin::pin!(events);
    let mut failures = Failures::default();
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => break,
            next = events.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                if answered(&event) {
                    failures.recovered();
                }
                if mirror.apply(event) == Applied::Listed && !*ready.borrow() {
                    tracing::info!(namespaces = mirror.len(), "namespace labels synced");
                    ready.send_replace(true);
                }
            }
            Some(Err(error)) => {
                let synced = *ready.borrow();
                if let Some(delay) = failures.record(&error, Instant::now(), synced) {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
            None => {
                // The watcher retries forever; an end would be a kube-runtime change.
                tracing::error!("namespace watch stream ended; {}", serving(*ready.borrow()));
                break;
            }
        }
    }
    tracing::debug!("namespace watcher stopped");
}

/// Whether an event is an answer from the API server. `Init` is not: the watcher emits
/// it before it even asks for the list.
fn answered(event: &Event<kube::core::PartialObjectMeta<Namespace>>) -> bool {
    !matches!(event, Event::Init)
}

/// What reviews get while the watch fails: before the first list there are no last
/// known labels to serve.
fn serving(synced: bool) -> &'static str {
    if synced {
        "serving from the last known labels"
    } else {
        "no labels known yet: each review asks the API server for its namespace, \
         and trusts the webhook configuration's namespaceSelector when that fails too"
    }
}

/// Delay before the next attempt after `consecutive` failures: 0.8 s doubling to 30 s.
fn backoff(consecutive: u64) -> Duration {
    const FIRST: Duration = Duration::from_millis(800);
    const MAX: Duration = Duration::from_secs(30);
    let doublings = u32::try_from(consecutive.saturating_sub(1).min(6)).unwrap_or(6);
    FIRST.saturating_mul(1 << doublings).min(MAX)
}

/// Logs at `warn` at most once per period and counts what it held back.
#[derive(Debug)]
pub(super) struct Throttle {
    every: Duration,
    last_warned: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    pub(super) fn new(every: Duration) -> Self {
        Self {
            every,
            last_warned: None,
            held_back: 0,
        }
    }

    /// `Some(n)`: warn now, `n` similar messages went to `debug` since the last warning.
    /// `None`: log this one at `debug`.
    pub(super) fn allow(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last_warned
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if due {
            self.last_warned = Some(now);
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }
}

/// The current run of watch failures.
#[derive(Debug)]
struct Failures {
    consecutive: u64,
    warned: bool,
    throttle: Throttle,
}

impl Default for Failures {
    fn default() -> Self {
        Self {
            consecutive: 0,
            warned: false,
            throttle: Throttle::new(WARN_EVERY),
        }
    }
}

impl Failures {
    /// Logs a failure; the delay before the next attempt, none for a routine relist.
    /// `synced`: whether a full list was ever in memory.
    fn record(&mut self, error: &watcher::Error, now: Instant, synced: bool) -> Option<Duration> {
        if let watcher::Error::WatchError(status) = error
            && status.code == 410
        {
            // The resourceVersion left the API server's watch window: routine, the
            // watcher relists and the mirror swaps the new list in whole.
            tracing::debug!(%error, "namespace watch expired; relisting");
            return None;
        }
        self.consecutive += 1;
        let consecutive = self.consecutive;
        if let Some(held_back) = self.throttle.allow(now) {
            self.warned = true;
            tracing::warn!(
                %error,
                consecutive,
                held_back,
                "namespace watch failed; retrying with backoff, {}",
                serving(synced)
            );
        } else {
            tracing::debug!(%error, consecutive, "namespace watch failed again");
        }
        Some(backoff(consecutive))
    }

    /// An event arrived: the watch works again. Says so only if the failure was
    /// announced at `warn`, so a flapping watch cannot flood the log with recoveries.
    fn recovered(&mut self) {
        if self.warned {
            tracing::info!(failures = self.consecutive, "namespace watch recovered");
        }
        self.consecutive = 0;
        self.warned = false;
    }
}

#[cfg(test)]
mod tests {
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
        let mut failures = Failures::default();
        let error = || watcher::Error::NoResourceVersion;
        failures.record(&error(), start, true);
        failures.record(&error(), start + Duration::from_secs(1), true);
        assert_eq!((failures.consecutive, failures.warned), (2, true));
        failures.recovered();
        assert_eq!((failures.consecutive, failures.warned), (0, false));

        // Within the same period the next failure only reaches debug, so its
        // recovery is not announced either.
        failures.record(&error(), start + Duration::from_secs(2), true);
        assert_eq!((failures.consecutive, failures.warned), (1, false));
    }

    #[test]
    fn an_expired_resource_version_is_routine_not_a_failure() {
        let mut failures = Failures::default();
        let expired =
            kube::core::Status::failure("too old resource version", "Expired").with_code(410);
        let delay = failures.record(
            &watcher::Error::WatchError(Box::new(expired)),
            Instant::now(),
            true,
        );
        assert_eq!((failures.consecutive, delay), (0, None));
    }

    #[test]
    fn the_init_marker_before_a_refused_list_is_no_recovery_and_the_backoff_grows() {
        // What the watcher yields while every list gets 403: Init, error, Init, error…
        let start = Instant::now();
        let mut failures = Failures::default();
        let mut delays = Vec::new();
        for n in 0..8 {
            let init = Event::Init;
            if answered(&init) {
                failures.recovered();
            }
            let refused = watcher::Error::NoResourceVersion;
            delays.extend(failures.record(&refused, start + Duration::from_secs(n), false));
        }
        assert_eq!(failures.consecutive, 8, "no recovery in between");
        let secs: Vec<f64> = delays.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(secs, [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]);
        assert!(answered(&Event::InitDone));
    }

    #[test]
    fn before_the_first_list_the_log_does_not_claim_last_known_labels() {
        assert!(!serving(false).contains("last known"));
        assert!(serving(true).contains("last known labels"));
    }
}
