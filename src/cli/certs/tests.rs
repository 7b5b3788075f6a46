use super::*;

#[test]
fn a_dns_flag_that_is_no_dns_name_is_refused() {
    assert!(parse_dns_name("host.minikube.internal").is_ok());
    let refused = parse_dns_name("192.168.49.1:8443").expect_err("not a name");
    assert!(refused.contains("--ip"), "{refused}");
}
