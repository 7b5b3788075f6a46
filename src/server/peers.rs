//! Connections counted by source address, so that no peer takes the slots the API server
//! needs; with `--trusted-peers`, the API server's addresses first.
//!
//! `--max-connections` bounds the webhook's connections in total; without more, a single
//! client holding 1,024 idle keep-alive connections (or reopening 1,100 bare TCP
//! connections that never start TLS) kept the API server waiting in the kernel's backlog
//! until its 3 s webhook timeout, and with `failurePolicy: Ignore` every pod was admitted
//! without its class. So each source address may hold at most
//! `--max-connections-per-address` connections, of which at most
//! `--max-handshakes-per-address` may be between the accept and the end of their TLS
//! handshake (silent ones included: the listener also drops a connection that sends
//! nothing within the first-byte timeout). A connection past either bound is refused
//! the moment it is accepted: it never holds a slot.
//!
//! Per-address bounds do not stop many addresses: 8 addresses × 200 idle TLS connections
//! held all 1,024 slots and no review from the API server was answered within 3 s. With
//! `--trusted-peers` (the API server's addresses, [`Priority`]):
//!
//! - a trusted address is never refused: no per-address bound, no handshake bound, and
//!   at `--max-connections` the untrusted connection idle longest (established, no
//!   request in flight, HTTP/1.1 or HTTP/2) is closed to make room. When none is idle,
//!   the trusted connection is admitted above the bound;
//! - an untrusted address is refused at `--max-connections` (the listener keeps
//!   accepting, so a trusted connection is never queued behind untrusted ones in the
//!   kernel's backlog), and while untrusted addresses together have
//!   `--max-untrusted-handshakes` handshakes in progress: handshakes cannot be evicted
//!   (they have no idle time yet), so this bound is what keeps silent connections from
//!   many addresses from holding every slot, and it caps the handshake work a flood gets.
//!
//! Without trusted peers the listener stops accepting at `--max-connections`, as before.
//!
//! One short lock per accept, per finished handshake and per closed connection; the search
//! for the idlest connection (a scan of the untrusted ones, at most `--max-connections`)
//! only when a trusted connection arrives at the bound. An address's entry goes when its
//! last connection closes, so the table never holds more entries than open connections.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::deadlines::Phase;
use crate::metrics::Refused;
use crate::trusted_peers::{TrustedPeers, canonical};

/// The per-address bounds (not applied to trusted peers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Open connections from one address, handshakes included.
    pub connections: usize,
    /// Of those, connections that have not finished their TLS handshake.
    pub handshakes: usize,
}

/// With `--trusted-peers`: who is served first, and the bounds over everyone else.
#[derive(Clone, Debug)]
pub struct Priority {
    pub trusted: TrustedPeers,
    /// `--max-connections`: all open connections, trusted ones included. Untrusted ones
    /// are refused at it; a trusted one makes room.
    pub connections: usize,
    /// `--max-untrusted-handshakes`: connections from untrusted addresses, together,
    /// between their accept and the end of their TLS handshake.
    pub untrusted_handshakes: usize,
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
    priority: Option<Priority>,
    table: Mutex<Table>,
    /// Refusal warnings: at most one per [`LOG_INTERVAL`].
    refusals: RateLimit,
    /// Lines naming a new source address: at most [`NEW_ADDRESS_LINES`] per interval.
    new_addresses: RateLimit,
}

#[derive(Debug, Default)]
struct Table {
    addresses: HashMap<IpAddr, Count>,
    next_id: u64,
    /// The rest only with [`Priority`]: every open connection,
    open: usize,
    /// the untrusted ones in their handshake,
    untrusted_handshakes: usize,
    /// and the untrusted ones past it, which may be evicted.
    established: HashMap<u64, Arc<Slot>>,
}

/// What a connection shares with the table.
#[derive(Debug)]
struct Slot {
    address: IpAddr,
    phase: Arc<Phase>,
    evict: Notify,
    /// Set under the table's lock when the connection is evicted: from then on it no
    /// longer counts, and its ticket's drop leaves the table alone.
    evicted: AtomicBool,
}

/// One admitted connection, counted against its address until dropped.
#[derive(Debug)]
pub struct Ticket {
    peers: Arc<Peers>,
    id: u64,
    trusted: bool,
    handshaking: bool,
    slot: Arc<Slot>,
}

/// A connection let in.
#[derive(Debug)]
pub struct Admitted {
    pub ticket: Ticket,
    /// The address of the idle connection closed to make room for it.
    pub evicted: Option<IpAddr>,
    /// Whether its address had no other open connection.
    pub new_address: bool,
}

/// At most one refusal warning per this interval; the others are counted in the next.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Lines that name a newly connected address, per [`LOG_INTERVAL`]: enough for every API
/// server to show at start-up, not so many that a flood from many addresses floods the
/// log.
const NEW_ADDRESS_LINES: u32 = 10;

impl Peers {
    /// `priority`: with `--trusted-peers`; `None` treats every address alike.
    pub fn new(limits: PeerLimits, priority: Option<Priority>) -> Arc<Self> {
        Arc::new(Peers {
            limits,
            priority: priority.filter(|p| !p.trusted.is_empty()),
            table: Mutex::new(Table::default()),
            refusals: RateLimit::new(LOG_INTERVAL, 1),
            new_addresses: RateLimit::new(LOG_INTERVAL, NEW_ADDRESS_LINES),
        })
    }

    /// Whether trusted peers are served first (the listener then never stops accepting).
    pub fn prioritised(&self) -> bool {
        self.priority.is_some()
    }

    /// Counts a connection just accepted from `address`, or refuses it. A trusted one
    /// is never refused, and may close an idle untrusted one to make room.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, Refused> {
        let address = canonical(address);
        let trusted = self
            .priority
            .as_ref()
            .is_some_and(|p| p.trusted.contains(address));
        let mut table = self.table();
        if !trusted && let Some(refused) = self.refusal(&table, address) {
            return Err(refused);
        }
        let evicted = match &self.priority {
            Some(p) if trusted && table.open >= p.connections => table.evict_idlest(),
            _ => None,
        };
        let new_address = match table.addresses.entry(address) {
            Entry::Occupied(mut count) => {
                let count = count.get_mut();
                count.open += 1;
                count.handshaking += 1;
                false
            }
            Entry::Vacant(vacant) => {
                vacant.insert(Count {
                    open: 1,
                    handshaking: 1,
                });
                true
            }
        };
        if self.priority.is_some() {
            table.open += 1;
            if !trusted {
                table.untrusted_handshakes += 1;
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        drop(table);
        Ok(Admitted {
            ticket: Ticket {
                peers: self.clone(),
                id,
                trusted,
                handshaking: true,
                slot: Arc::new(Slot {
                    address,
                    phase: Arc::new(Phase::default()),
                    evict: Notify::new(),
                    evicted: AtomicBool::new(false),
                }),
            },
            evicted,
            new_address,
        })
    }

    /// Why a connection from the untrusted `address` is refused, if it is.
    fn refusal(&self, table: &Table, address: IpAddr) -> Option<Refused> {
        let (open, handshaking) = table
            .addresses
            .get(&address)
            .map_or((0, 0), |c| (c.open, c.handshaking));
        if open >= self.limits.connections {
            return Some(Refused::AddressConnections);
        }
        if handshaking >= self.limits.handshakes {
            return Some(Refused::AddressHandshakes);
        }
        let priority = self.priority.as_ref()?;
        if table.open >= priority.connections {
            Some(Refused::Connections)
        } else if table.untrusted_handshakes >= priority.untrusted_handshakes {
            Some(Refused::UntrustedHandshakes)
        } else {
            None
        }
    }

    /// Whether a refusal (or eviction) should be logged now, and how many went unlogged
    /// before it. At most one per [`LOG_INTERVAL`]: a flood must not flood the logs too.
    pub fn warn_now(&self) -> Option<u64> {
        self.refusals.now()
    }

    /// Whether a newly connected address should be logged now (how admins find the API
    /// server's addresses), and how many went unlogged before it.
    pub fn log_new_address_now(&self) -> Option<u64> {
        self.new_addresses.now()
    }

    /// (open connections, handshakes in progress) of `address`.
    #[cfg(test)]
    fn of(&self, address: IpAddr) -> (usize, usize) {
        self.table()
            .addresses
            .get(&canonical(address))
            .map_or((0, 0), |c| (c.open, c.handshaking))
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The counts stay consistent even if a holder panicked: every update is one step.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    /// Closes the untrusted connection idle longest, if one is idle, and returns its
    /// address. It stops counting at once; its task is told to close it.
    fn evict_idlest(&mut self) -> Option<IpAddr> {
        let (_, id) = self
            .established
            .iter()
            .filter_map(|(id, slot)| Some((slot.phase.idle_since()?, *id)))
            .min()?;
        let slot = self.established.remove(&id)?;
        slot.evicted.store(true, Ordering::Relaxed);
        self.open -= 1;
        self.forget(slot.address, false);
        slot.evict.notify_one();
        Some(slot.address)
    }

    /// One connection of `address` fewer.
    fn forget(&mut self, address: IpAddr, handshaking: bool) {
        if let Entry::Occupied(mut count) = self.addresses.entry(address) {
            let count = count.get_mut();
            count.open -= 1;
            if handshaking {
                count.handshaking -= 1;
            }
            if count.open == 0 {
                self.addresses.remove(&address);
            }
        }
    }
}

impl Ticket {
    /// The TLS handshake is done: the connection no longer counts as a handshake, and
    /// (from an untrusted address, with trusted peers) may be evicted once idle.
    pub fn established(&mut self) {
        if !std::mem::take(&mut self.handshaking) {
            return;
        }
        let mut table = self.peers.table();
        if let Some(count) = table.addresses.get_mut(&self.slot.address) {
            count.handshaking -= 1;
        }
        if self.peers.priority.is_some() && !self.trusted {
            table.untrusted_handshakes -= 1;
            table.established.insert(self.id, self.slot.clone());
        }
    }

    /// Whether the connection comes from `--trusted-peers`.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// The connection's requests, for the service to count and the table to read.
    pub fn phase(&self) -> Arc<Phase> {
        self.slot.phase.clone()
    }

    /// Resolves when the connection has been evicted: close it.
    pub async fn evicted(&self) {
        self.slot.evict.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self.peers.table();
        if self.slot.evicted.load(Ordering::Relaxed) {
            return;
        }
        table.forget(self.slot.address, self.handshaking);
        if self.peers.priority.is_some() {
            table.open -= 1;
            if !self.trusted {
                if self.handshaking {
                    table.untrusted_handshakes -= 1;
                } else {
                    table.established.remove(&self.id);
                }
            }
        }
    }
}

/// At most `burst` events per interval are let through; the others are counted.
#[derive(Debug)]
struct RateLimit {
    interval: Duration,
    burst: u32,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    let_through: u32,
    held_back: u64,
}

impl RateLimit {
    fn new(interval: Duration, burst: u32) -> Self {
        RateLimit {
            interval,
            burst,
            window: Mutex::new(Window {
                start: Instant::now(),
                let_through: 0,
                held_back: 0,
            }),
        }
    }

    /// `Some(events held back since the last one let through)` when this one may be
    /// logged.
    fn now(&self) -> Option<u64> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(window.start) >= self.interval {
            window.start = now;
            window.let_through = 0;
        }
        if window.let_through < self.burst {
            window.let_through += 1;
            Some(std::mem::take(&mut window.held_back))
        } else {
            window.held_back += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests;
