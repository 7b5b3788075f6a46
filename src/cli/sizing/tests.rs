use super::table::*;
use super::*;

fn q(text: &str) -> Option<Quantity> {
    Some(Quantity::parse(text).expect("quantity"))
}

#[test]
fn memory_reads_in_the_largest_unit_rounded_up_so_over_never_looks_equal() {
    assert_eq!(memory(q("10Gi")), "10.0Gi");
    assert_eq!(memory(q("10737418241")), "10.1Gi");
    assert_eq!(memory(q("1536Mi")), "1.5Gi");
    assert_eq!(memory(q("512")), "512");
    assert_eq!(memory(None), "-");
}

#[test]
fn cpu_reads_in_cpus_with_two_decimals_rounded_up() {
    assert_eq!(cpu(q("2345m")), "2.35");
    assert_eq!(cpu(q("5")), "5.00");
    assert_eq!(cpu(q("1m")), "0.01");
}

#[test]
fn a_peak_is_shown_against_its_limit() {
    assert_eq!(percent(q("12Gi"), q("10Gi"), memory), "12.0Gi (120%)");
    assert_eq!(percent(q("3"), None, cpu), "3.00");
}

#[test]
fn headroom_is_between_one_and_ten() {
    assert!(parse_headroom("1.2").is_ok());
    assert!(parse_headroom("1").is_ok());
    assert!(parse_headroom("0.9").is_err());
    assert!(parse_headroom("11").is_err());
    assert!(parse_headroom("lots").is_err());
}

#[test]
fn until_is_rfc_3339() {
    assert!(parse_time("2026-05-04T00:00:00Z").is_ok());
    assert!(parse_time("2026-05-04").is_err());
}
