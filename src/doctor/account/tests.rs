//! The webhook's account: its token, `--kube off`, and the SubjectAccessReview answers
//! per access the server needs.

use k8s_openapi::api::apps::v1::DeploymentSpec;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PodTemplateSpec, ProjectedVolumeSource, ServiceAccountTokenProjection,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;
use crate::doctor::report::Status;

fn account_of() -> (String, String) {
    ("ci-pod-webhook".into(), "ci-pod-webhook".into())
}

fn deployment(pod: PodSpec) -> Deployment {
    Deployment {
        spec: Some(DeploymentSpec {
            selector: LabelSelector::default(),
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn pod(automount: Option<bool>) -> PodSpec {
    PodSpec {
        service_account_name: Some("ci-pod-webhook".into()),
        automount_service_account_token: automount,
        containers: vec![Container {
            name: "webhook".into(),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

fn service_account(automount: Option<bool>) -> ServiceAccount {
    ServiceAccount {
        automount_service_account_token: automount,
        ..ServiceAccount::default()
    }
}

/// Every verb of every access, allowed unless `refused` names it.
fn answers(refused: &[(&str, &str)]) -> Vec<AccessAnswer> {
    access::ALL
        .iter()
        .flat_map(|a| {
            a.verbs.iter().map(move |verb| AccessAnswer {
                access: *a,
                verb,
                allowed: Ok(!refused.contains(&(a.resource, *verb))),
            })
        })
        .collect()
}

fn run(
    account: Option<&ServiceAccount>,
    pod: PodSpec,
    answers: &[AccessAnswer],
) -> Vec<(Status, String)> {
    let deployment = deployment(pod);
    super::account(&account_of(), Ok(account), Some(&deployment), answers)
        .into_iter()
        .map(|c| (c.status, c.message))
        .collect()
}

#[test]
fn the_base_install_mounts_the_token_and_may_read_all_it_needs() {
    let found = run(Some(&service_account(None)), pod(Some(true)), &answers(&[]));
    let expected: Vec<(Status, String)> = [
        "the webhook's pods mount the token of ServiceAccount ci-pod-webhook/ci-pod-webhook",
        "ServiceAccount ci-pod-webhook/ci-pod-webhook may get, list and watch on namespaces",
        "ServiceAccount ci-pod-webhook/ci-pod-webhook may list and watch on runtimeclasses.node.k8s.io",
        "ServiceAccount ci-pod-webhook/ci-pod-webhook may list and watch on pods",
    ]
    .into_iter()
    .map(|m| (Status::Ok, m.to_string()))
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn no_token_is_a_failure_wherever_automount_is_turned_off() {
    let cases = [
        (Some(false), None, Some("the Deployment's pod template")),
        (None, Some(false), Some("the ServiceAccount")),
        (
            Some(false),
            Some(true),
            Some("the Deployment's pod template"),
        ),
        // The pod's field wins over the account's.
        (Some(true), Some(false), None),
        (None, None, None),
    ];
    for (on_pod, on_account, failing) in cases {
        let found = run(Some(&service_account(on_account)), pod(on_pod), &[]);
        match failing {
            Some(place) => assert_eq!(
                found[0],
                (
                    Status::Failure,
                    format!(
                        "the webhook's pods mount no token: automountServiceAccountToken is false on {place}"
                    )
                ),
                "{on_pod:?} {on_account:?}"
            ),
            None => assert_eq!(found[0].0, Status::Ok, "{on_pod:?} {on_account:?}"),
        }
    }
}

#[test]
fn a_token_projected_by_hand_where_serve_reads_it_counts_as_mounted() {
    let mut spec = pod(Some(false));
    spec.volumes = Some(vec![Volume {
        name: "token".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".into(),
                    ..ServiceAccountTokenProjection::default()
                }),
                ..VolumeProjection::default()
            }]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }]);
    spec.containers[0].volume_mounts = Some(vec![VolumeMount {
        name: "token".into(),
        mount_path: TOKEN_DIR.into(),
        ..VolumeMount::default()
    }]);
    let found = run(Some(&service_account(None)), spec, &[]);
    assert_eq!(found[0].0, Status::Ok, "{found:?}");
}

#[test]
fn a_refused_namespace_verb_fails_and_a_refused_optional_one_warns() {
    let found = run(
        Some(&service_account(None)),
        pod(None),
        &answers(&[("namespaces", "watch"), ("pods", "list"), ("pods", "watch")]),
    );
    assert_eq!(
        found[1],
        (
            Status::Failure,
            "ServiceAccount ci-pod-webhook/ci-pod-webhook may not watch namespaces".into()
        )
    );
    assert_eq!(found[2].0, Status::Ok);
    assert_eq!(
        found[3],
        (
            Status::Warning,
            "ServiceAccount ci-pod-webhook/ci-pod-webhook may not list, watch pods".into()
        )
    );
    let checks = super::account(
        &account_of(),
        Ok(Some(&service_account(None))),
        None,
        &answers(&[("namespaces", "list")]),
    );
    assert_eq!(checks[0].hint.as_deref(), Some(access::NAMESPACES.without));
    assert_eq!(checks[0].fix.as_deref(), Some(access::FIX));
}

#[test]
fn a_doctor_that_may_not_ask_says_so_once() {
    let mut asked = answers(&[]);
    for answer in &mut asked {
        answer.allowed = Err("subjectaccessreviews.authorization.k8s.io is forbidden".into());
    }
    let found = run(Some(&service_account(None)), pod(None), &asked);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[1],
        (
            Status::Failure,
            "cannot ask the API server what ServiceAccount ci-pod-webhook/ci-pod-webhook may do: subjectaccessreviews.authorization.k8s.io is forbidden".into()
        )
    );
}

#[test]
fn a_missing_account_and_kube_off_are_named() {
    let mut spec = pod(None);
    spec.containers[0].env = Some(vec![EnvVar {
        name: "CI_POD_WEBHOOK_KUBE".into(),
        value: Some("off".into()),
        ..EnvVar::default()
    }]);
    let found = run(None, spec, &[]);
    assert_eq!(
        found,
        [
            (
                Status::Failure,
                "ServiceAccount ci-pod-webhook/ci-pod-webhook not found".into()
            ),
            (
                Status::Ok,
                "the webhook's pods mount the token of ServiceAccount ci-pod-webhook/ci-pod-webhook".into()
            ),
            (
                Status::Warning,
                "serve runs with --kube off (CI_POD_WEBHOOK_KUBE=off)".into()
            ),
        ]
    );
}
