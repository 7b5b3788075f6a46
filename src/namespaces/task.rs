//! The background task that keeps the mirror in step with the cluster.
//!
//! `kube`'s watcher lists the namespaces, then watches from the list's resourceVersion,
//! resuming after a dropped connection and relisting when the version has expired.
//! `default_backoff` spaces out its retries (0.8 s doubling to 30 s, as client-go does),
//! and while it retries the mirror keeps answering with what it last knew.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
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
    let events = watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut failures = Failures::default();
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => break,
            next = events.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                failures.recovered();
                if mirror.apply(event) == Applied::Listed && !*ready.borrow() {
                    tracing::info!(namespaces = mirror.len(), "namespace labels synced");
                    ready.send_replace(true);
                }
            }
            Some(Err(error)) => failures.record(&error, Instant::now()),
            None => {
                // The watcher retries forever; an end would be a kube-runtime change.
                tracing::error!("namespace watch stream ended; serving from the last known labels");
                break;
            }
        }
    }
    tracing::debug!("namespace watcher stopped");
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
    fn record(&mut self, error: &watcher::Error, now: Instant) {
        if let watcher::Error::WatchError(status) = error
            && status.code == 410
        {
            // The resourceVersion left the API server's watch window: routine, the
            // watcher relists and the mirror swaps the new list in whole.
            tracing::debug!(%error, "namespace watch expired; relisting");
            return;
        }
        self.consecutive += 1;
        let consecutive = self.consecutive;
        if let Some(held_back) = self.throttle.allow(now) {
            self.warned = true;
            tracing::warn!(
                %error,
                consecutive,
                held_back,
                "namespace watch failed; retrying with backoff, serving from the last known labels"
            );
        } else {
            tracing::debug!(%error, consecutive, "namespace watch failed again");
        }
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
        failures.record(&error(), start);
        failures.record(&error(), start + Duration::from_secs(1));
        assert_eq!((failures.consecutive, failures.warned), (2, true));
        failures.recovered();
        assert_eq!((failures.consecutive, failures.warned), (0, false));

        // Within the same period the next failure only reaches debug, so its
        // recovery is not announced either.
        failures.record(&error(), start + Duration::from_secs(2));
        assert_eq!((failures.consecutive, failures.warned), (1, false));
    }

    #[test]
    fn an_expired_resource_version_is_routine_not_a_failure() {
        let mut failures = Failures::default();
        let expired =
            kube::core::Status::failure("too old resource version", "Expired").with_code(410);
        failures.record(
            &watcher::Error::WatchError(Box::new(expired)),
            Instant::now(),
        );
        assert_eq!(failures.consecutive, 0);
    }
}
