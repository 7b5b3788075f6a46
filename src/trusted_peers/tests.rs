use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[test]
fn a_range_contains_the_addresses_under_its_prefix_and_no_others() {
    let range: Cidr = "10.0.1.0/24".parse().expect("a range");
    assert!(range.contains(v4(10, 0, 1, 0)));
    assert!(range.contains(v4(10, 0, 1, 255)));
    assert!(!range.contains(v4(10, 0, 2, 1)));
    assert!(!range.contains(v4(10, 0, 0, 255)));
    assert!(!range.contains(IpAddr::V6(Ipv6Addr::LOCALHOST)));
}

#[test]
fn a_bare_address_is_a_range_of_one() {
    let one: Cidr = "127.0.0.1".parse().expect("an address");
    assert_eq!(one.to_string(), "127.0.0.1/32");
    assert!(one.contains(v4(127, 0, 0, 1)));
    assert!(!one.contains(v4(127, 0, 0, 2)));
    let six: Cidr = "fd00::1".parse().expect("an address");
    assert_eq!(six.to_string(), "fd00::1/128");
}

#[test]
fn prefixes_0_and_full_length_work_for_both_families() {
    let all: Cidr = "0.0.0.0/0".parse().expect("all of IPv4");
    assert!(all.contains(v4(1, 2, 3, 4)));
    assert!(!all.contains(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    let all6: Cidr = "::/0".parse().expect("all of IPv6");
    assert!(all6.contains(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    let net6: Cidr = "fd00:1::/32".parse().expect("a range");
    assert!(net6.contains("fd00:1:ffff::9".parse().expect("v6")));
    assert!(!net6.contains("fd00:2::9".parse().expect("v6")));
}

#[test]
fn an_ipv4_client_of_a_dual_stack_listener_matches_its_ipv4_range() {
    let range: Cidr = "10.0.0.0/8".parse().expect("a range");
    let mapped = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001));
    assert!(range.contains(mapped));
}

#[test]
fn malformed_ranges_are_refused_with_what_to_write_instead() {
    let error = |text: &str| text.parse::<Cidr>().unwrap_err().to_string();
    assert!(
        error("10.0.0.5/24").contains("write 10.0.0.0/24"),
        "{}",
        error("10.0.0.5/24")
    );
    assert!(error("10.0.0.0/33").contains("at most 32"));
    assert!(error("fd00::/129").contains("at most 128"));
    assert!(error("10.0.0.0/+8").contains("not an IP address"));
    assert!(error("10.0.0.0/").contains("not an IP address"));
    assert!(error("api-server").contains("not an IP address"));
    assert!(error("10.0.0.0/8/8").contains("not an IP address"));
    assert!(error("::ffff:10.0.0.1").contains("write it as IPv4"));
}

#[test]
fn a_list_is_comma_separated_and_an_empty_value_is_no_range() {
    let peers: TrustedPeers = " 10.0.0.10/32, 10.0.0.11 ,,fd00::/64,"
        .parse()
        .expect("a list");
    assert_eq!(peers.to_string(), "10.0.0.10/32,10.0.0.11/32,fd00::/64");
    assert!(peers.contains(v4(10, 0, 0, 11)));
    assert!(!peers.contains(v4(10, 0, 0, 12)));
    assert!("".parse::<TrustedPeers>().expect("empty").is_empty());
    assert!(" , ".parse::<TrustedPeers>().expect("blank").is_empty());
    assert!("10.0.0.1,nope".parse::<TrustedPeers>().is_err());
}
