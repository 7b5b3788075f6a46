//! The Service checks, one table each: what the API server dials, against the Service,
//! the Deployment's pod template and the EndpointSlices, as manifests/base has them and
//! as they go wrong.

use k8s_openapi::api::apps::v1::DeploymentSpec;
use k8s_openapi::api::core::v1::{EnvVar, PodSpec, PodTemplateSpec, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::*;
use crate::doctor::report::Status;
use crate::doctor::test_support::labels;

const POD_LABELS: &[(&str, &str)] = &[
    ("app.kubernetes.io/name", "ci-pod-webhook"),
    ("app.kubernetes.io/component", "webhook"),
];

fn dialled() -> Dialled {
    Dialled {
        namespace: "ci-pod-webhook".into(),
        name: "ci-pod-webhook".into(),
        port: 443,
    }
}

/// manifests/base/service.yaml: 443 -> https, 8080 -> admin.
fn base_service() -> Service {
    Service {
        spec: Some(ServiceSpec {
            selector: Some(labels(POD_LABELS)),
            ports: Some(vec![
                ServicePort {
                    name: Some("https".into()),
                    port: 443,
                    target_port: Some(IntOrString::String("https".into())),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some("metrics".into()),
                    port: 8080,
                    target_port: Some(IntOrString::String("admin".into())),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// manifests/base/deployment.yaml's container, as far as these checks read it.
fn base_deployment(listen: Option<&str>) -> Deployment {
    let container = Container {
        name: "webhook".into(),
        env: listen.map(|l| {
            vec![EnvVar {
                name: "CI_POD_WEBHOOK_LISTEN".into(),
                value: Some(l.into()),
                ..EnvVar::default()
            }]
        }),
        ports: Some(vec![
            ContainerPort {
                name: Some("https".into()),
                container_port: 8443,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: 8080,
                ..ContainerPort::default()
            },
        ]),
        ..Container::default()
    };
    Deployment {
        spec: Some(DeploymentSpec {
            selector: LabelSelector::default(),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(POD_LABELS)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// One EndpointSlice of the Service's https port with these readiness conditions.
fn slice(ready: &[Option<bool>]) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: ready
            .iter()
            .enumerate()
            .map(|(n, r)| Endpoint {
                addresses: vec![format!("10.22.0.{}", n + 2)],
                conditions: Some(EndpointConditions {
                    ready: *r,
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("https".into()),
            port: Some(8443),
            ..EndpointPort::default()
        }]),
        ..EndpointSlice::default()
    }
}

fn run(
    service: Result<Option<&Service>, &str>,
    deployment: Option<&Deployment>,
    slices: &[EndpointSlice],
) -> Vec<(Status, String)> {
    super::service(&dialled(), service, deployment, Ok(slices))
        .into_iter()
        .map(|c| (c.status, c.message))
        .collect()
}

#[test]
fn the_base_service_targets_the_port_serve_listens_on_and_has_ready_endpoints() {
    let service = base_service();
    for listen in [Some("0.0.0.0:8443"), None] {
        let deployment = base_deployment(listen);
        let found = run(
            Ok(Some(&service)),
            Some(&deployment),
            &[slice(&[Some(true), None])],
        );
        assert_eq!(
            found[0],
            (
                Status::Ok,
                "Service ci-pod-webhook/ci-pod-webhook port 443 targets container port 8443 (https), where serve listens".into()
            )
        );
        assert_eq!(
            found[1],
            (
                Status::Ok,
                "Service ci-pod-webhook/ci-pod-webhook: 2 ready endpoint(s) on port 8443".into()
            )
        );
        assert_eq!(found.len(), 2, "{found:?}");
    }
}

#[test]
fn a_missing_service_or_port_fails_every_call() {
    let deployment = base_deployment(None);
    let found = run(Ok(None), Some(&deployment), &[]);
    assert_eq!(
        found,
        [(
            Status::Failure,
            "Service ci-pod-webhook/ci-pod-webhook not found".into()
        )]
    );
    let found = run(Err("services \"ci-pod-webhook\" is forbidden"), None, &[]);
    assert_eq!(found[0].0, Status::Failure);
    assert!(found[0].1.starts_with("cannot read Service"), "{found:?}");

    let mut other_port = base_service();
    other_port
        .spec
        .as_mut()
        .expect("spec")
        .ports
        .as_mut()
        .expect("ports")[0]
        .port = 8443;
    let found = run(Ok(Some(&other_port)), Some(&deployment), &[]);
    assert_eq!(
        found,
        [(
            Status::Failure,
            "Service ci-pod-webhook/ci-pod-webhook has no port 443, the one the webhook configuration dials (ports: 8443, 8080)".into()
        )]
    );
}

#[test]
fn a_target_port_no_container_declares_or_serve_does_not_listen_on_fails() {
    let service = base_service();
    let ready = [slice(&[Some(true)])];
    let cases: [(&str, Option<&str>, &str); 3] = [
        (
            "webhook",
            None,
            "Service ci-pod-webhook/ci-pod-webhook port 443 targets webhook, which no container of the webhook's Deployment declares",
        ),
        (
            "9443",
            None,
            "Service ci-pod-webhook/ci-pod-webhook port 443 targets 9443, which no container of the webhook's Deployment declares",
        ),
        (
            "https",
            Some("0.0.0.0:9443"),
            "Service ci-pod-webhook/ci-pod-webhook port 443 targets container port 8443 (https), but serve listens on 9443 (CI_POD_WEBHOOK_LISTEN)",
        ),
    ];
    for (target, listen, message) in cases {
        let mut service = service.clone();
        service
            .spec
            .as_mut()
            .expect("spec")
            .ports
            .as_mut()
            .expect("ports")[0]
            .target_port = Some(match target.parse() {
            Ok(n) => IntOrString::Int(n),
            Err(_) => IntOrString::String(target.into()),
        });
        let deployment = base_deployment(listen);
        let found = run(Ok(Some(&service)), Some(&deployment), &ready);
        assert_eq!(found[0], (Status::Failure, message.into()), "{target}");
    }
}

#[test]
fn a_selector_the_pods_do_not_match_fails() {
    let mut service = base_service();
    service.spec.as_mut().expect("spec").selector = Some(labels(&[
        ("app.kubernetes.io/name", "ci-pod-webhook"),
        ("app", "webhook"),
    ]));
    let deployment = base_deployment(None);
    let found = run(Ok(Some(&service)), Some(&deployment), &[]);
    assert_eq!(
        found[1],
        (
            Status::Failure,
            "Service ci-pod-webhook/ci-pod-webhook selects pods labelled app=webhook, which the webhook's pods are not".into()
        )
    );
}

#[test]
fn no_ready_endpoint_fails_and_some_not_ready_warns() {
    let service = base_service();
    let deployment = base_deployment(None);
    let cases: [(Vec<EndpointSlice>, Status, &str); 4] = [
        (
            vec![],
            Status::Failure,
            "Service ci-pod-webhook/ci-pod-webhook has no ready endpoint (0 not ready)",
        ),
        (
            vec![slice(&[Some(false), Some(false)])],
            Status::Failure,
            "Service ci-pod-webhook/ci-pod-webhook has no ready endpoint (2 not ready)",
        ),
        (
            vec![slice(&[Some(true)]), slice(&[Some(false)])],
            Status::Warning,
            "Service ci-pod-webhook/ci-pod-webhook: 1 ready endpoint(s) on port 8443, 1 not ready",
        ),
        (
            vec![slice(&[Some(true)]), slice(&[Some(true)])],
            Status::Ok,
            "Service ci-pod-webhook/ci-pod-webhook: 2 ready endpoint(s) on port 8443",
        ),
    ];
    for (slices, status, message) in cases {
        let found = run(Ok(Some(&service)), Some(&deployment), &slices);
        assert_eq!(found.last(), Some(&(status, message.to_string())));
    }
    let failed = super::service(&dialled(), Ok(Some(&service)), Some(&deployment), Ok(&[]));
    assert_eq!(
        failed.last().and_then(|c| c.fix.as_deref()),
        Some(
            "kubectl -n ci-pod-webhook get endpointslices -l kubernetes.io/service-name=ci-pod-webhook -o wide; kubectl -n ci-pod-webhook get pods -o wide"
        )
    );
}

#[test]
fn a_url_webhook_dials_no_service() {
    let entry = MutatingWebhook {
        client_config: k8s_openapi::api::admissionregistration::v1::WebhookClientConfig {
            url: Some("https://10.0.0.7:8443/mutate".into()),
            ..Default::default()
        },
        ..MutatingWebhook::default()
    };
    assert_eq!(Dialled::of(&entry), None);
}
