//! One shape for every watch the webhook keeps on the cluster: a background task that
//! feeds a [`Store`] from `kube`'s watcher, a readiness flag, and one stop token.
//!
//! `kube`'s watcher lists the objects, then watches from the list's resourceVersion,
//! resuming after a dropped connection and relisting when the version has expired.
//! Retries are spaced out here (0.8 s doubling to 30 s, as client-go does), not by
//! kube's `default_backoff`: that one resets on any event, and the watcher emits an
//! `Init` marker before every list attempt, so a list refused with 403 was retried
//! about once a second and each marker was taken for a recovery. Only an answer from
//! the API server (a listed object, the end of a list, a watch event) counts as one.
//! While it retries, the store keeps answering with what it last knew. A [`Relist`]
//! signal drops the stream and lists afresh: the pod watcher uses it to judge every pod
//! again under a reloaded policy; a store can ask for the same from its
//! [`Store::tick`] (the pod watcher, when a namespace opts in or changes mode).
//!
//! A watch the API server turns away (401: it does not accept the credentials; 403: the
//! account may not list or watch the resource) is a configuration error, not an outage:
//! the log line says what is missing and how to fix it ([`super::access`]), and the
//! watch holds the refusal until an answer clears it, so `/readyz` can say why it is
//! not ready.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::access::{self, Access};

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
    /// What the webhook does while this watch has never completed a list, for the log
    /// line of a failing watch (after the first list: "serving from the last known state").
    fn before_first_list(&self) -> &'static str;
    /// What the webhook's account must be allowed for this watch.
    fn access(&self) -> Access;
    /// Called about once per [`TICK`] between events: for work that waits on something
    /// other than this watch's events. [`Tick::Relist`] lists every object again.
    fn tick(&mut self) -> Tick {
        Tick::Idle
    }
}

/// What a store asks for after [`Store::tick`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    Idle,
    /// List again (the store must see every object anew, as after a policy reload).
    Relist,
}

/// How often [`Store::tick`] runs.
pub const TICK: Duration = Duration::from_secs(1);

/// Asks a watcher to list again (a new value is a request; the value means nothing).
pub type Relist = watch::Receiver<u64>;

/// A running watch: ready once its first full list is stored. It stops when the stop
/// token it was spawned with is cancelled (see [`super::Cluster::stop`]).
#[derive(Clone, Debug)]
pub struct Watcher {
    what: &'static str,
    ready: watch::Receiver<bool>,
    /// Why the API server turns the watch away, while it does.
    refused: watch::Receiver<Option<Arc<str>>>,
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
        let (refused_tx, refused) = watch::channel(None);
        let signals = Signals {
            ready: ready_tx,
            refused: refused_tx,
        };
        tokio::spawn(run(what, api, config, store, relist, signals, stop));
        Watcher {
            what,
            ready,
            refused,
        }
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

    /// While the API server turns the watch away (401 or 403): what it said, what the
    /// account needs and how to grant it, in one line.
    #[must_use]
    pub fn refused(&self) -> Option<Arc<str>> {
        self.refused.borrow().clone()
    }

    /// Resolves once the first full list is stored, or when the task stopped.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        // An error means the task ended (stopped): nothing left to wait for.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

/// What a watch task tells its [`Watcher`].
struct Signals {
    ready: watch::Sender<bool>,
    refused: watch::Sender<Option<Arc<str>>>,
}

/// Runs until `stop` is cancelled.
async fn run<K, S>(
    what: &'static str,
    api: Api<K>,
    config: watcher::Config,
    mut store: S,
    mut relist: Option<Relist>,
    signals: Signals,
    stop: CancellationToken,
) where
    K: kube::Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    S: Store<K>,
{
    let Signals { ready, refused } = signals;
    let mut failures = Failures::new(what, store.access());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'streams: loop {
        let events = watcher::watcher(api.clone(), config.clone());
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
                _ = tick.tick() => {
                    if store.tick() == Tick::Relist {
                        tracing::debug!(what, "listing again, as the store asked");
                        continue 'streams;
                    }
                    continue;
                }
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
                    if answered(&event) {
                        failures.recovered();
                        refused.send_if_modified(|r| r.take().is_some());
                    }
                    if store.apply(event) == Applied::Listed && !*ready.borrow() {
                        tracing::info!(what, objects = store.held(), "watch synced");
                        ready.send_replace(true);
                    }
                }
                Some(Err(error)) => {
                    let serving = serving(*ready.borrow(), store.before_first_list());
                    if let Some(refusal) = Refusal::of(&error) {
                        refused.send_replace(Some(refusal.reason(what, store.access()).into()));
                    }
                    if let Some(delay) = failures.record(&error, Instant::now(), serving) {
                        tokio::select! {
                            () = stop.cancelled() => break 'streams,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                }
                None => {
                    // The watcher retries forever; an end would be a kube-runtime change.
                    let serving = serving(*ready.borrow(), store.before_first_list());
                    tracing::error!(what, "watch stream ended; {serving}");
                    break 'streams;
                }
            }
        }
    }
    tracing::debug!(what, "watcher stopped");
}

/// Whether an event is an answer from the API server. `Init` is not: the watcher emits
/// it before it even asks for the list.
fn answered<K>(event: &Event<K>) -> bool {
    !matches!(event, Event::Init)
}

/// What reviews get while the watch fails: before the first list there is no last
/// known state to serve.
fn serving(synced: bool, before_first_list: &'static str) -> &'static str {
    if synced {
        "serving from the last known state"
    } else {
        before_first_list
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

/// The API server turned the client away, in its words.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// 401: it does not accept the credentials (no token, an expired or foreign one).
    Unauthenticated(String),
    /// 403: the account may not list or watch the resource.
    Forbidden(String),
}

/// How to fix a 401: the credentials, not the permissions.
const UNAUTHENTICATED_FIX: &str = "check the credentials: the ServiceAccount token the pod \
     mounts (automountServiceAccountToken: true, as manifests/base sets), or the kubeconfig";

impl Refusal {
    fn of(error: &watcher::Error) -> Option<Refusal> {
        let status = match error {
            watcher::Error::InitialListFailed(kube::Error::Api(status))
            | watcher::Error::WatchStartFailed(kube::Error::Api(status))
            | watcher::Error::WatchFailed(kube::Error::Api(status))
            | watcher::Error::WatchError(status) => status,
            _ => return None,
        };
        match status.code {
            401 => Some(Refusal::Unauthenticated(status.message.clone())),
            403 => Some(Refusal::Forbidden(status.message.clone())),
            _ => None,
        }
    }

    /// One line: what the API server said, what is missing, how to fix it.
    fn reason(&self, what: &str, access: Access) -> String {
        match self {
            Refusal::Unauthenticated(message) => format!(
                "the API server does not accept the webhook's credentials for the {what} watch \
                 (401: {message}); {UNAUTHENTICATED_FIX}"
            ),
            Refusal::Forbidden(message) => format!(
                "the API server refuses the {what} watch (403: {message}); the webhook's \
                 account needs {}: {}",
                access.describe(),
                access::FIX
            ),
        }
    }
}

/// The current run of watch failures.
#[derive(Debug)]
struct Failures {
    what: &'static str,
    access: Access,
    consecutive: u64,
    warned: bool,
    throttle: Throttle,
}

impl Failures {
    fn new(what: &'static str, access: Access) -> Self {
        Self {
            what,
            access,
            consecutive: 0,
            warned: false,
            throttle: Throttle::new(WARN_EVERY),
        }
    }

    /// Logs a failure; the delay before the next attempt, none for a routine relist.
    /// `serving` says what reviews get meanwhile.
    fn record(
        &mut self,
        error: &watcher::Error,
        now: Instant,
        serving: &'static str,
    ) -> Option<Duration> {
        if let watcher::Error::WatchError(status) = error
            && status.code == 410
        {
            // The resourceVersion left the API server's watch window: routine, the
            // watcher relists and the store swaps the new list in whole.
            tracing::debug!(what = self.what, %error, "watch expired; relisting");
            return None;
        }
        self.consecutive += 1;
        let consecutive = self.consecutive;
        if let Some(held_back) = self.throttle.allow(now) {
            self.warned = true;
            match Refusal::of(error) {
                // Configuration, not an outage: say what is missing and how to fix it.
                Some(Refusal::Forbidden(_)) => tracing::error!(
                    what = self.what,
                    needs = %self.access.describe(),
                    fix = access::FIX,
                    meanwhile = serving,
                    %error,
                    consecutive,
                    held_back,
                    "no permission: the API server refuses the watch to the webhook's account"
                ),
                Some(Refusal::Unauthenticated(_)) => tracing::error!(
                    what = self.what,
                    fix = UNAUTHENTICATED_FIX,
                    meanwhile = serving,
                    %error,
                    consecutive,
                    held_back,
                    "not authenticated: the API server does not accept the webhook's credentials"
                ),
                None => tracing::warn!(
                    what = self.what,
                    %error,
                    consecutive,
                    held_back,
                    "watch failed; retrying with backoff, {serving}"
                ),
            }
        } else {
            tracing::debug!(what = self.what, %error, consecutive, "watch failed again");
        }
        Some(backoff(consecutive))
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
mod tests;
