//! Connections counted by source address, so that one peer cannot take the slots the API
//! server needs.
//!
//! `--max-connections` bounds the webhook's connections in total; without more, a single
//! client holding 1,024 idle keep-alive connections (or reopening 1,100 bare TCP
//! connections that never start TLS) kept the API server waiting in the kernel's backlog
//! until its 3 s webhook timeout, and with `failurePolicy: Ignore` every pod was admitted
//! without its class. Here each source address may hold at most
//! `--max-connections-per-address` connections, of which at most
//! `--max-handshakes-per-address` may be between the accept and the end of their TLS
//! handshake (silent ones included: the listener also drops a connection that sends
//! nothing within the first-byte timeout). A connection past either bound is refused
//! the moment it is accepted: it never holds a slot.
//!
//! The API server connects from a few addresses (its node's, or a konnectivity agent's
//! for several API servers at once), so the defaults leave it ample room; many addresses
//! at once are what the shipped NetworkPolicy is for (docs/network.md).
//!
//! One short lock per accept and per closed connection; an address's entry goes when its
//! last connection closes, so the table never holds more entries than open connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::Refused;

/// The per-address bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Open connections from one address, handshakes included.
    pub connections: usize,
    /// Of those, connections that have not finished their TLS handshake.
    pub handshakes: usize,
}

#[derive(Debug, Default)]
struct Count {
    open: usize,
    handshaking: usize,
}

/// The connections of every source address.
#[derive(Debug)]
pub struct Peers {
    limits: PeerLimits,
    counts: Mutex<HashMap<IpAddr, Count>>,
    /// For rate-limited warnings: when the clock started, and the next warning's time
    /// (milliseconds after it), and how many refusals went unlogged since the last one.
    epoch: Instant,
    next_warning_ms: AtomicU64,
    unlogged: AtomicU64,
}

/// One admitted connection, counted against its address until dropped.
#[derive(Debug)]
pub struct Ticket {
    peers: Arc<Peers>,
    address: IpAddr,
    handshaking: bool,
}

/// At most one refusal warning per this interval; the others are counted in it.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl Peers {
    pub fn new(limits: PeerLimits) -> Arc<Self> {
        Arc::new(Peers {
            limits,
            counts: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            next_warning_ms: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        })
    }

    /// Counts a connection just accepted from `address`, or refuses it.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Ticket, Refused> {
        let address = canonical(address);
        let mut counts = self.counts();
        let count = counts.entry(address).or_default();
        let refused = if count.open >= self.limits.connections {
            Some(Refused::AddressConnections)
        } else if count.handshaking >= self.limits.handshakes {
            Some(Refused::AddressHandshakes)
        } else {
            None
        };
        if let Some(refused) = refused {
            // Only possible with a bound of 0 (the flags refuse it): no empty entries.
            if count.open == 0 {
                counts.remove(&address);
            }
            return Err(refused);
        }
        count.open += 1;
        count.handshaking += 1;
        Ok(Ticket {
            peers: self.clone(),
            address,
            handshaking: true,
        })
    }

    /// Whether a refusal should be logged now, and how many went unlogged before it.
    /// At most one per [`WARNING_INTERVAL`]: a flood must not flood the logs too.
    pub fn warn_now(&self) -> Option<u64> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due = self.next_warning_ms.load(Ordering::Relaxed);
        let next = now.saturating_add(WARNING_INTERVAL.as_millis() as u64);
        if now >= due
            && self
                .next_warning_ms
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.unlogged.swap(0, Ordering::Relaxed))
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// (open connections, handshakes in progress) of `address`.
    #[cfg(test)]
    fn of(&self, address: IpAddr) -> (usize, usize) {
        self.counts()
            .get(&canonical(address))
            .map_or((0, 0), |c| (c.open, c.handshaking))
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<IpAddr, Count>> {
        // The counts stay consistent even if a holder panicked: every update is one step.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Ticket {
    /// The TLS handshake is done: the connection no longer counts as a handshake.
    pub fn established(&mut self) {
        if std::mem::take(&mut self.handshaking) {
            let mut counts = self.peers.counts();
            if let Some(count) = counts.get_mut(&self.address) {
                count.handshaking -= 1;
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.peers.counts();
        if let Some(count) = counts.get_mut(&self.address) {
            count.open -= 1;
            if self.handshaking {
                count.handshaking -= 1;
            }
            if count.open == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

/// An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`: the same peer as
/// `a.b.c.d`.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
