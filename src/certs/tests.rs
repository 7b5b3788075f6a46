use super::*;

/// The certificate for Service `service` in `namespace`, valid for a day.
fn service<'a>(service: &'a str, namespace: &'a str) -> ServiceCertificate<'a> {
    ServiceCertificate {
        service,
        namespace,
        days: 1,
        ips: &[],
        dns_names: &[],
    }
}

#[test]
fn service_names_cover_every_way_the_api_server_may_dial() {
    assert_eq!(
        service_names("hook", "ci"),
        [
            "hook",
            "hook.ci",
            "hook.ci.svc",
            "hook.ci.svc.cluster.local"
        ]
    );
}

#[test]
fn days_out_of_range_are_refused() {
    let out = tempfile::tempdir().expect("tempdir");
    let cert = ServiceCertificate {
        days: 0,
        ..service("s", "n")
    };
    assert!(matches!(
        run(&cert, out.path(), false),
        Err(CertError::Days(0))
    ));
}

#[test]
fn an_existing_ca_is_not_replaced_without_force_even_after_ca_key_was_deleted() {
    let out = tempfile::tempdir().expect("tempdir");
    let cert = service("s", "n");
    run(&cert, out.path(), false).expect("first run");
    let ca = std::fs::read(out.path().join(CA_CERT)).expect("ca.crt");
    assert!(matches!(
        run(&cert, out.path(), false),
        Err(CertError::Exists(_))
    ));
    // As the docs advise once the install works.
    std::fs::remove_file(out.path().join(CA_KEY)).expect("remove ca.key");
    let refused = run(&cert, out.path(), false).expect_err("ca.crt and tls.* are still there");
    assert!(refused.to_string().contains("--force"), "{refused}");
    assert_eq!(std::fs::read(out.path().join(CA_CERT)).expect("ca.crt"), ca);
    run(&cert, out.path(), true).expect("forced run");
    assert_ne!(std::fs::read(out.path().join(CA_CERT)).expect("ca.crt"), ca);
}

#[test]
fn ip_and_dns_flags_become_subject_alternative_names() {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let out = tempfile::tempdir().expect("tempdir");
    let ips: [IpAddr; 2] = [
        "192.168.49.1".parse().expect("ip"),
        "::1".parse().expect("ip"),
    ];
    let dns_names = ["host.minikube.internal".to_string()];
    let cert = ServiceCertificate {
        ips: &ips,
        dns_names: &dns_names,
        ..service("s", "n")
    };
    run(&cert, out.path(), false).expect("run");
    let pem = std::fs::read(out.path().join(TLS_CERT)).expect("tls.crt");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
    let (_, cert) = X509Certificate::from_der(&pem.contents).expect("der");
    let san = cert
        .subject_alternative_name()
        .expect("extension")
        .expect("a SAN");
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => (*d).to_string(),
            GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(names.contains(&"s.n.svc".to_string()), "{names:?}");
    assert!(
        names.contains(&"host.minikube.internal".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"ip:[192, 168, 49, 1]".to_string()),
        "{names:?}"
    );
    assert_eq!(names.iter().filter(|n| n.starts_with("ip:")).count(), 2);
}

#[test]
fn a_development_directory_in_use_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = write_dev_certs(dir.path()).expect("first");
    let before = fs::read(dir.path().join(TLS_KEY)).expect("key");
    assert!(matches!(
        write_dev_certs(dir.path()),
        Err(CertError::InUse(_))
    ));
    assert_eq!(fs::read(dir.path().join(TLS_KEY)).expect("key"), before);
    drop(held);
    write_dev_certs(dir.path()).expect("free again");
    assert_ne!(fs::read(dir.path().join(TLS_KEY)).expect("key"), before);
}
