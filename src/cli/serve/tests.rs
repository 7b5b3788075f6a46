use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    assert!(parse_duration("5h").is_err());
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("-1s").is_err());
}

#[test]
fn defaults_need_no_flags() {
    let cli = Cli::try_parse_from(["serve"]).expect("parses");
    let args = cli.serve;
    assert_eq!(args.listen, SocketAddr::from(([0, 0, 0, 0], 8443)));
    assert_eq!(args.admin_listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
    assert_eq!(args.max_body_bytes, 4 * 1024 * 1024);
    assert_eq!(args.drain_timeout, Duration::from_secs(20));
    assert_eq!(args.max_connections_per_address, 256);
    assert_eq!(args.max_handshakes_per_address, 128);
    assert_eq!(args.max_untrusted_handshakes, 128);
    assert!(args.trusted_peers.is_empty());
    assert_eq!(args.kube, Kube::Auto);
    assert!(args.cert_dir().ends_with("ci-pod-webhook-dev-certs"));
}

#[test]
fn a_certificate_without_its_key_is_refused() {
    assert!(Cli::try_parse_from(["serve", "--tls-cert", "c.pem"]).is_err());
    assert!(Cli::try_parse_from(["serve", "--tls-cert", "c", "--tls-key", "k"]).is_ok());
}

#[test]
fn bad_values_are_refused_when_parsed() {
    for args in [
        ["serve", "--listen", "localhost"],
        ["serve", "--max-connections", "0"],
        ["serve", "--max-connections-per-address", "0"],
        ["serve", "--max-handshakes-per-address", "-1"],
        ["serve", "--max-untrusted-handshakes", "0"],
        ["serve", "--trusted-peers", "10.0.0.5/24"],
        ["serve", "--trusted-peers", "api-server"],
        ["serve", "--log-level", "info,=[bad"],
        ["serve", "--log-format", "xml"],
        ["serve", "--webhook-namespace", "Not/A/Namespace"],
    ] {
        assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
    }
}

#[test]
fn trusted_peers_are_ranges_separated_by_commas_and_reach_the_settings() {
    let cli = Cli::try_parse_from([
        "serve",
        "--trusted-peers",
        "10.0.0.10/32, 10.0.1.0/24,fd00::1",
    ])
    .expect("parses");
    assert_eq!(
        cli.serve.trusted_peers.to_string(),
        "10.0.0.10/32,10.0.1.0/24,fd00::1/128"
    );
    let settings = cli
        .serve
        .settings("c".into(), "k".into(), Cluster::default());
    assert_eq!(settings.trusted_peers, cli.serve.trusted_peers);
    let error = Cli::try_parse_from(["serve", "--trusted-peers", "10.0.0.5/24"])
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("write 10.0.0.0/24"), "{error}");
}

#[test]
fn the_kube_flag_accepts_auto_and_off() {
    use clap::ValueEnum as _;
    assert_eq!(Kube::from_str("auto", false), Ok(Kube::Auto));
    assert_eq!(Kube::from_str("off", false), Ok(Kube::Off));
    assert!(Kube::from_str("on", false).is_err());
    assert_eq!(KubeMode::from(Kube::Off), KubeMode::Off);
}
