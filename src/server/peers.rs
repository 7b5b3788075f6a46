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

/// The per-address bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Open connections from one address, handshakes included.
    pub connections: usize,
    /// Of those, connections that have not finished their TLS handshake.
    pub handshakes: usize,
}

/// Why a connection was refused: the `reason` label of `connections_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its address already holds `--max-connections-per-address` connections.
    AddressConnections,
    /// Its address already has `--max-handshakes-per-address` handshakes in progress.
    AddressHandshakes,
}

impl Refused {
    pub const ALL: [Refused; 2] = [Refused::AddressConnections, Refused::AddressHandshakes];

    pub fn as_str(self) -> &'static str {
        match self {
            Refused::AddressConnections => "address_connections",
            Refused::AddressHandshakes => "address_handshakes",
        }
    }

    /// The flag that sets the bound, for log lines.
    pub fn flag(self) -> &'static str {
        match self {
            Refused::AddressConnections => "--max-connections-per-address",
            Refused::AddressHandshakes => "--max-handshakes-per-address",
        }
    }
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
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn peers(connections: usize, handshakes: usize) -> Arc<Peers> {
        Peers::new(PeerLimits {
            connections,
            handshakes,
        })
    }

    #[test]
    fn handshakes_in_progress_are_bounded_per_address_and_others_are_unaffected() {
        let peers = peers(10, 2);
        let first = peers.admit(A).expect("first");
        let _second = peers.admit(A).expect("second");
        assert_eq!(peers.admit(A).unwrap_err(), Refused::AddressHandshakes);
        let _other = peers.admit(B).expect("another address has its own bound");
        assert_eq!(peers.of(A), (2, 2), "a refused connection is not counted");
        drop(first);
        let _third = peers.admit(A).expect("a handshake ended: room again");
    }

    #[test]
    fn established_connections_leave_room_for_handshakes_up_to_the_connection_bound() {
        let peers = peers(3, 1);
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut ticket = peers.admit(A).expect("admitted");
            ticket.established();
            ticket.established(); // twice is once
            held.push(ticket);
        }
        assert_eq!(peers.of(A), (3, 0));
        assert_eq!(peers.admit(A).unwrap_err(), Refused::AddressConnections);
        held.pop();
        let _fourth = peers.admit(A).expect("one closed: room again");
        assert_eq!(peers.of(A), (3, 1));
    }

    #[test]
    fn an_address_leaves_the_table_with_its_last_connection() {
        let peers = peers(3, 3);
        let a = peers.admit(A).expect("a");
        let mut b = peers.admit(A).expect("b");
        b.established();
        drop(a);
        drop(b);
        assert_eq!(peers.of(A), (0, 0));
        assert!(peers.counts().is_empty());
    }

    #[test]
    fn an_ipv4_client_of_a_dual_stack_listener_counts_as_its_ipv4_address() {
        let peers = peers(1, 1);
        let _v4 = peers.admit(A).expect("v4");
        let mapped = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001));
        assert_eq!(
            peers.admit(mapped).unwrap_err(),
            Refused::AddressConnections
        );
        let _v6 = peers
            .admit(IpAddr::V6(Ipv6Addr::LOCALHOST))
            .expect("a real IPv6 address is its own");
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_interval_and_the_rest_counted() {
        let peers = peers(1, 1);
        assert_eq!(peers.warn_now(), Some(0));
        assert_eq!(peers.warn_now(), None);
        assert_eq!(peers.warn_now(), None);
        // Pretend the interval has passed.
        peers.next_warning_ms.store(0, Ordering::Relaxed);
        assert_eq!(peers.warn_now(), Some(2));
    }
}
