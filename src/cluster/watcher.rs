//! One shape for every watch the webhook keeps on the cluster: a background task that
//! feeds a [`Store`] from `kube`'s watcher, a readiness flag, and one stop token.
//!
//! `kube`'s watcher lists the objects, then watches from the list's resourceVersion,
//! resuming after a dropped connection and relisting when the version has expired.
//! `default_backoff` spaces out its retries (0.8 s doubling to 30 s, as client-go does),
//! and while it retries the store keeps answering with what it last knew. A [`Relist`]
//! signal drops the stream and lists afresh: the pod watcher uses it to judge every pod
//! again under a reloaded policy.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A failing watch is reported at `warn` at most this often; the rest go to `debug`.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(30);

/// Whether an event completed a full list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Listed,
    Updated,
}

/// What a watch keeps: fed every event, in order, by the watcher task.
pub trait Store<K>: Send + 'static {
    fn apply(&mut self, event: Event<K>) -> Applied;
    /// Objects held, for the log line that announces the first sync.
    fn held(&self) -> usize;
}

/// Asks a watcher to list again (a new value is a request; the value means nothing).
pub type Relist = watch::Receiver<u64>;

/// A running watch: ready once its first full list is stored. It stops when the stop
/// token it was spawned with is cancelled (see [`super::Cluster::stop`]).
#[derive(Clone, Debug)]
pub struct Watcher {
    what: &'static str,
    ready: watch::Receiver<bool>,
}

impl Watcher {
    /// Spawns the task watching `api` into `store`. `what` names the objects in logs
    /// ("namespace", "job pod"). Must run inside a Tokio runtime.
    pub fn spawn<K, S>(
        what: &'static str,
        api: Api<K>,
        config: watcher::Config,
        store: S,
        relist: Option<Relist>,
        stop: CancellationToken,
    ) -> Watcher
    where
        K: kube::Resource + Clone + Debug + DeserializeOwned + Send + 'static,
        S: Store<K>,
    {
        let (ready_tx, ready) = watch::channel(false);
        tokio::spawn(run(what, api, config, store, relist, ready_tx, stop));
        Watcher { what, ready }
    }

    pub fn what(&self) -> &'static str {
        self.what
    }

    /// True once the first full list is stored (and from then on, also while the
    /// watch reconnects).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the first full list is stored, or when the task stopped.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        // An error means the task ended (stopped): nothing left to wait for.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

/// Runs until `stop` is cancelled.
async fn run<K, S>(
    what: &'static str,
    api: Api<K>,
    config: watcher::Config,
    mut store: S,
    mut relist: Option<Relist>,
    ready: watch::Sender<bool>,
    stop: CancellationToken,
) where
    K: kube::Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    S: Store<K>,
{
    let mut failures = Failures::new(what);
    'streams: loop {
        let events = watcher(api.clone(), config.clone()).default_backoff();
        let mut events = std::pin::pin!(events);
        loop {
            let relisted = async {
                match relist.as_mut() {
                    Some(signal) => signal.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                () = stop.cancelled() => break 'streams,
                again = relisted => {
                    if again {
                        tracing::debug!(what, "listing again");
                        continue 'streams;
                    }
                    // The sender is gone: no more relists, keep watching.
                    relist = None;
                    continue;
                }
                next = events.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    failures.recovered();
                    if store.apply(event) == Applied::Listed && !*ready.borrow() {
                        tracing::info!(what, objects = store.held(), "watch synced");
                        ready.send_replace(true);
                    }
                }
                Some(Err(error)) => failures.record(&error, Instant::now()),
                None => {
                    // The watcher retries forever; an end would be a kube-runtime change.
                    tracing::error!(
                        what,
                        "watch stream ended; serving from the last known state"
                    );
                    break 'streams;
                }
            }
        }
    }
    tracing::debug!(what, "watcher stopped");
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
    what: &'static str,
    consecutive: u64,
    warned: bool,
    throttle: Throttle,
}

impl Failures {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            consecutive: 0,
            warned: false,
            throttle: Throttle::new(WARN_EVERY),
        }
    }

    fn record(&mut self, error: &watcher::Error, now: Instant) {
        if let watcher::Error::WatchError(status) = error
            && status.code == 410
        {
            // The resourceVersion left the API server's watch window: routine, the
            // watcher relists and the store swaps the new list in whole.
            tracing::debug!(what = self.what, %error, "watch expired; relisting");
            return;
        }
        self.consecutive += 1;
        let consecutive = self.consecutive;
        if let Some(held_back) = self.throttle.allow(now) {
            self.warned = true;
            tracing::warn!(
                what = self.what,
                %error,
                consecutive,
                held_back,
                "watch failed; retrying with backoff, serving from the last known state"
            );
        } else {
            tracing::debug!(what = self.what, %error, consecutive, "watch failed again");
        }
    }

    /// An event arrived: the watch works again. Says so only if the failure was
    /// announced at `warn`, so a flapping watch cannot flood the log with recoveries.
    fn recovered(&mut self) {
        if self.warned {
            tracing::info!(
                what = self.what,
                failures = self.consecutive,
                "watch recovered"
            );
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
        let mut failures = Failures::new("namespace");
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
        let mut failures = Failures::new("namespace");
        let expired =
            kube::core::Status::failure("too old resource version", "Expired").with_code(410);
        failures.record(
            &watcher::Error::WatchError(Box::new(expired)),
            Instant::now(),
        );
        assert_eq!(failures.consecutive, 0);
    }
}
