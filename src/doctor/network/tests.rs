use k8s_openapi::api::apps::v1::DeploymentSpec;
use k8s_openapi::api::core::v1::{
    ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec,
};

use super::*;
use crate::doctor::report::Status;

const AT: &str = "ci-pod-webhook/ci-pod-webhook";

fn with(container: Container) -> Deployment {
    Deployment {
        spec: Some(DeploymentSpec {
            template: PodTemplateSpec {
                spec: Some(PodSpec {
                    containers: vec![
                        Container {
                            name: "sidecar".into(),
                            ..Container::default()
                        },
                        container,
                    ],
                    ..PodSpec::default()
                }),
                ..PodTemplateSpec::default()
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn webhook(args: &[&str], env: &[(&str, &str)]) -> Container {
    Container {
        name: "webhook".into(),
        args: (!args.is_empty()).then(|| args.iter().map(|a| (*a).to_string()).collect()),
        env: Some(
            env.iter()
                .map(|(name, value)| EnvVar {
                    name: (*name).into(),
                    value: Some((*value).into()),
                    value_from: None,
                })
                .collect(),
        ),
        ..Container::default()
    }
}

fn check(container: Container) -> (Status, String) {
    let check = trusted_peers(AT, &with(container));
    (check.status, check.message)
}

#[test]
fn trusted_peers_from_the_environment_are_checked_and_shown() {
    assert_eq!(
        check(webhook(&[], &[(ENV, "10.0.0.10/32,10.0.0.11")])),
        (
            Status::Ok,
            format!("Deployment {AT}: trusted peers (the API server) 10.0.0.10/32,10.0.0.11/32")
        )
    );
}

#[test]
fn no_trusted_peers_warns_as_the_server_does_at_start_up() {
    let (status, message) = check(webhook(&[], &[("CI_POD_WEBHOOK_LISTEN", "0.0.0.0:8443")]));
    assert_eq!(status, Status::Warning);
    assert_eq!(
        message,
        format!("Deployment {AT}: no --trusted-peers or {ENV}: no trusted peers")
    );
    // manifests/base ships the variable empty, for the admin to fill in.
    let (status, message) = check(webhook(&[], &[(ENV, "")]));
    assert_eq!(status, Status::Warning);
    assert!(
        message.contains("CI_POD_WEBHOOK_TRUSTED_PEERS is empty"),
        "{message}"
    );
    let warning = trusted_peers(AT, &with(webhook(&[], &[(ENV, " ")])));
    assert!(
        warning
            .hint
            .is_some_and(|h| h.contains("failurePolicy Ignore"))
    );
    assert!(warning.fix.is_some_and(|f| f.contains("docs/network.md")));
}

#[test]
fn an_invalid_value_fails_because_the_server_would_not_start() {
    let (status, message) = check(webhook(&[], &[(ENV, "10.0.0.5/24")]));
    assert_eq!(status, Status::Failure);
    assert!(message.contains("write 10.0.0.0/24"), "{message}");
}

#[test]
fn an_argument_wins_over_the_environment_in_both_spellings() {
    for args in [
        &["serve", "--trusted-peers", "10.1.0.0/16"][..],
        &["serve", "--trusted-peers=10.1.0.0/16"][..],
    ] {
        assert_eq!(
            check(webhook(args, &[(ENV, "")])),
            (
                Status::Ok,
                format!("Deployment {AT}: trusted peers (the API server) 10.1.0.0/16")
            ),
            "{args:?}"
        );
    }
    let (status, message) = check(webhook(&["--trusted-peers="], &[(ENV, "10.0.0.1")]));
    assert_eq!(status, Status::Warning);
    assert!(
        message.contains("--trusted-peers argument is empty"),
        "{message}"
    );
}

#[test]
fn values_from_references_and_env_from_are_not_guessed() {
    let mut referenced = webhook(&[], &[]);
    referenced.env = Some(vec![EnvVar {
        name: ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: "api-server".into(),
                key: "cidrs".into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }]);
    assert_eq!(check(referenced).0, Status::Ok);
    let mut env_from = webhook(&[], &[]);
    env_from.env_from = Some(vec![EnvFromSource::default()]);
    let (status, message) = check(env_from);
    assert_eq!(status, Status::Warning);
    assert!(
        message.contains("unless an envFrom source sets it"),
        "{message}"
    );
}
