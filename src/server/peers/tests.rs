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
