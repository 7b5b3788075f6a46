use std::net::{Ipv4Addr, Ipv6Addr};

use futures::FutureExt as _;

use super::*;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const C: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
/// The API server, in `trusting`'s trusted range.
const API: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 10));

fn peers(connections: usize, handshakes: usize) -> Arc<Peers> {
    Peers::new(
        PeerLimits {
            connections,
            handshakes,
        },
        None,
    )
}

/// Per-address bounds of 2 connections and 2 handshakes; 192.168.0.0/24 trusted.
fn trusting(connections: usize, untrusted_handshakes: usize) -> Arc<Peers> {
    Peers::new(
        PeerLimits {
            connections: 2,
            handshakes: 2,
        },
        Some(Priority {
            trusted: "192.168.0.0/24".parse().expect("a range"),
            connections,
            untrusted_handshakes,
        }),
    )
}

fn admit(peers: &Arc<Peers>, address: IpAddr) -> Ticket {
    peers.admit(address).expect("admitted").ticket
}

fn established(peers: &Arc<Peers>, address: IpAddr) -> Ticket {
    let mut ticket = admit(peers, address);
    ticket.established();
    ticket
}

fn was_evicted(ticket: &Ticket) -> bool {
    ticket.evicted().now_or_never().is_some()
}

/// (all open, untrusted handshakes, evictable) as the table counts them.
fn totals(peers: &Peers) -> (usize, usize, usize) {
    let table = peers.table();
    (
        table.open,
        table.untrusted_handshakes,
        table.established.len(),
    )
}

#[test]
fn handshakes_in_progress_are_bounded_per_address_and_others_are_unaffected() {
    let peers = peers(10, 2);
    let first = admit(&peers, A);
    let _second = admit(&peers, A);
    assert_eq!(peers.admit(A).unwrap_err(), Refused::AddressHandshakes);
    let _other = admit(&peers, B);
    assert_eq!(peers.of(A), (2, 2), "a refused connection is not counted");
    drop(first);
    let _third = admit(&peers, A);
}

#[test]
fn established_connections_leave_room_for_handshakes_up_to_the_connection_bound() {
    let peers = peers(3, 1);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut ticket = admit(&peers, A);
        ticket.established();
        ticket.established(); // twice is once
        held.push(ticket);
    }
    assert_eq!(peers.of(A), (3, 0));
    assert_eq!(peers.admit(A).unwrap_err(), Refused::AddressConnections);
    held.pop();
    let _fourth = admit(&peers, A);
    assert_eq!(peers.of(A), (3, 1));
}

#[test]
fn an_address_leaves_the_table_with_its_last_connection_and_is_new_again() {
    let peers = peers(3, 3);
    let first = peers.admit(A).expect("a");
    assert!(first.new_address);
    let mut second = peers.admit(A).expect("b");
    assert!(!second.new_address);
    second.ticket.established();
    drop(first);
    drop(second);
    assert_eq!(peers.of(A), (0, 0));
    assert!(peers.table().addresses.is_empty());
    assert!(peers.admit(A).expect("again").new_address);
}

#[test]
fn an_ipv4_client_of_a_dual_stack_listener_counts_as_its_ipv4_address() {
    let peers = peers(1, 1);
    let _v4 = admit(&peers, A);
    let mapped = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001));
    assert_eq!(
        peers.admit(mapped).unwrap_err(),
        Refused::AddressConnections
    );
    let _v6 = admit(&peers, IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[test]
fn without_trusted_peers_there_is_no_bound_here_over_all_addresses() {
    // The listener's semaphore bounds them: it stops accepting at --max-connections.
    let empty = Priority {
        trusted: TrustedPeers::default(),
        connections: 1,
        untrusted_handshakes: 1,
    };
    let peers = Peers::new(
        PeerLimits {
            connections: 2,
            handshakes: 2,
        },
        Some(empty),
    );
    assert!(!peers.prioritised());
    let _held: Vec<_> = [A, A, B, B, C, C].map(|a| admit(&peers, a)).into();
    assert_eq!(totals(&peers), (0, 0, 0));
}

#[test]
fn a_trusted_address_passes_every_bound() {
    let peers = trusting(3, 1);
    let mapped_api = IpAddr::V6(Ipv4Addr::new(192, 168, 0, 10).to_ipv6_mapped());
    let held: Vec<_> = (0..10)
        .map(|i| {
            let admitted = peers
                .admit(if i % 2 == 0 { API } else { mapped_api })
                .expect("never refused");
            assert!(admitted.ticket.trusted());
            assert_eq!(admitted.evicted, None, "nothing to evict");
            admitted
        })
        .collect();
    assert_eq!(
        peers.of(API),
        (10, 10),
        "per-address and handshake bounds do not apply"
    );
    assert_eq!(
        totals(&peers),
        (10, 0, 0),
        "counted in the total, not in untrusted handshakes"
    );
    assert_eq!(peers.admit(A).unwrap_err(), Refused::Connections);
    drop(held);
    assert_eq!(totals(&peers), (0, 0, 0));
    assert!(peers.table().addresses.is_empty());
}

#[test]
fn untrusted_addresses_are_refused_at_the_total_and_at_their_handshakes_together() {
    let peers = trusting(4, 2);
    let mut a = admit(&peers, A);
    let _b = admit(&peers, B);
    assert_eq!(
        peers.admit(C).unwrap_err(),
        Refused::UntrustedHandshakes,
        "two untrusted handshakes are in progress, from two addresses"
    );
    let _api = admit(&peers, API);
    a.established();
    let _c = admit(&peers, C);
    assert_eq!(totals(&peers), (4, 2, 1));
    assert_eq!(peers.admit(C).unwrap_err(), Refused::Connections);
    let _api2 = admit(&peers, API);
    assert_eq!(
        totals(&peers),
        (4, 2, 0),
        "the trusted one took the idle one's place"
    );
    assert!(was_evicted(&a));
    assert_eq!(
        peers.of(A),
        (0, 0),
        "an evicted connection stops counting at once"
    );
    drop(a);
    assert_eq!(
        totals(&peers),
        (4, 2, 0),
        "its drop counts nothing off twice"
    );
}

#[tokio::test(start_paused = true)]
async fn at_the_total_a_trusted_connection_evicts_the_untrusted_one_idle_longest() {
    let peers = trusting(3, 3);
    // Opened first, but used last: idle the shortest time.
    let old_busy = established(&peers, A);
    tokio::time::advance(Duration::from_secs(1)).await;
    let idle_longest = established(&peers, B);
    drop(idle_longest.phase().start());
    tokio::time::advance(Duration::from_secs(1)).await;
    let recent = established(&peers, C);
    drop(recent.phase().start());
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(old_busy.phase().start());
    tokio::time::advance(Duration::from_secs(1)).await;

    let admitted = peers.admit(API).expect("trusted");
    assert_eq!(admitted.evicted, Some(B));
    assert!(was_evicted(&idle_longest));
    assert!(!was_evicted(&recent) && !was_evicted(&old_busy));
    let next = peers.admit(API).expect("trusted");
    assert_eq!(next.evicted, Some(C), "then the next idlest");
    assert!(was_evicted(&recent));
    assert_eq!(totals(&peers), (3, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_and_handshakes_are_never_evicted_and_the_trusted_one_goes_above() {
    let peers = trusting(3, 3);
    let handshaking = admit(&peers, A);
    let busy = established(&peers, B);
    let request = busy.phase().start();
    // HTTP/2: two streams, one ended; the connection is still busy.
    let h2 = established(&peers, C);
    let stream = h2.phase().start();
    drop(h2.phase().start());
    tokio::time::advance(Duration::from_secs(60)).await;

    let admitted = peers.admit(API).expect("never refused");
    assert_eq!(admitted.evicted, None);
    assert_eq!(totals(&peers), (4, 1, 2), "admitted above the bound");
    assert!(!was_evicted(&handshaking) && !was_evicted(&busy) && !was_evicted(&h2));
    // Once the last stream ends, the HTTP/2 connection is idle and can go.
    drop(stream);
    assert_eq!(peers.admit(API).expect("trusted").evicted, Some(C));
    drop(request);
}

#[tokio::test(start_paused = true)]
async fn a_connection_established_without_a_request_is_idle_since_its_accept() {
    let peers = trusting(2, 2);
    let silent = admit(&peers, A);
    tokio::time::advance(Duration::from_secs(1)).await;
    let answered = established(&peers, B);
    drop(answered.phase().start());
    let mut silent = silent;
    silent.established();
    assert_eq!(peers.admit(API).expect("trusted").evicted, Some(A));
}

#[tokio::test(start_paused = true)]
async fn refusals_are_logged_at_most_once_per_interval_and_the_rest_counted() {
    let peers = peers(1, 1);
    assert_eq!(peers.warn_now(), Some(0));
    assert_eq!(peers.warn_now(), None);
    assert_eq!(peers.warn_now(), None);
    tokio::time::advance(LOG_INTERVAL).await;
    assert_eq!(peers.warn_now(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn new_addresses_are_logged_in_bursts_of_ten_per_interval() {
    let peers = peers(1, 1);
    for _ in 0..NEW_ADDRESS_LINES {
        assert_eq!(peers.log_new_address_now(), Some(0));
    }
    assert_eq!(peers.log_new_address_now(), None);
    tokio::time::advance(LOG_INTERVAL / 2).await;
    assert_eq!(peers.log_new_address_now(), None);
    tokio::time::advance(LOG_INTERVAL / 2).await;
    assert_eq!(peers.log_new_address_now(), Some(2));
}
