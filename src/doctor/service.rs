//! Can the API server reach the webhook's pods? The Service the webhook configuration
//! dials: it exists, has the port dialled, that port targets the container port `serve`
//! listens on, its selector picks the Deployment's pods, and it has ready endpoints.
//! Any of these wrong, and every call fails: job pods are created without the policy
//! (failurePolicy Ignore) or not at all (Fail), while the Deployment looks healthy.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, ContainerPort, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::install::GROUP;
use super::report::Check;

const RBAC_FIX: &str =
    "kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md)";
const INSTALL_FIX: &str = "kubectl apply -k <your overlay> (docs/deploy.md)";
/// What `serve` listens on without `CI_POD_WEBHOOK_LISTEN` (its `--listen` default).
const DEFAULT_LISTEN_PORT: i32 = 8443;
const FAILING: &str = "every call fails: job pods are created without the policy (failurePolicy Ignore) or not at all (Fail)";

/// The Service a webhook entry dials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialled {
    pub namespace: String,
    pub name: String,
    pub port: i32,
}

impl Dialled {
    /// `None` when the entry dials a URL: no Service in the path.
    pub fn of(entry: &MutatingWebhook) -> Option<Dialled> {
        let service = entry.client_config.service.as_ref()?;
        Some(Dialled {
            namespace: service.namespace.clone(),
            name: service.name.clone(),
            // The API's default.
            port: service.port.unwrap_or(443),
        })
    }
}

/// Checks of the Service `dialled` names, against the Deployment's pod template and
/// the Service's EndpointSlices.
pub fn service(
    dialled: &Dialled,
    service: Result<Option<&Service>, &str>,
    deployment: Option<&Deployment>,
    slices: Result<&[EndpointSlice], &str>,
) -> Vec<Check> {
    let where_ = format!("Service {}/{}", dialled.namespace, dialled.name);
    let service = match service {
        Err(error) => {
            return vec![
                Check::failure(GROUP, format!("cannot read {where_}: {error}")).fix(RBAC_FIX),
            ];
        }
        Ok(None) => {
            return vec![
                Check::failure(GROUP, format!("{where_} not found"))
                    .hint(format!(
                        "the webhook configuration dials {}.{}.svc: {FAILING}",
                        dialled.name, dialled.namespace
                    ))
                    .fix(INSTALL_FIX),
            ];
        }
        Ok(Some(s)) => s,
    };
    let spec = service.spec.clone().unwrap_or_default();
    let ports = spec.ports.unwrap_or_default();
    let Some(port) = ports.iter().find(|p| p.port == dialled.port) else {
        let have: Vec<String> = ports.iter().map(|p| p.port.to_string()).collect();
        return vec![
            Check::failure(
                GROUP,
                format!(
                    "{where_} has no port {}, the one the webhook configuration dials (ports: {})",
                    dialled.port,
                    if have.is_empty() { "none".to_string() } else { have.join(", ") }
                ),
            )
            .hint(FAILING)
            .fix(format!(
                "give the Service port {} (manifests/base/service.yaml), or set clientConfig.service.port",
                dialled.port
            )),
        ];
    };
    let mut checks = Vec::new();
    if let Some(deployment) = deployment {
        checks.extend(targets(&where_, port, deployment));
        checks.extend(selects(&where_, spec.selector.as_ref(), deployment));
    }
    checks.push(endpoints(dialled, &where_, port, slices));
    checks
}

/// The container port the Service port targets, and whether `serve` listens there.
fn targets(where_: &str, port: &ServicePort, deployment: &Deployment) -> Option<Check> {
    let containers = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.as_slice())
        .unwrap_or_default();
    let target = port
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(port.port));
    let found = containers.iter().find_map(|c| {
        c.ports
            .iter()
            .flatten()
            .find(|p| match &target {
                IntOrString::Int(n) => p.container_port == *n,
                IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
            })
            .map(|p| (c, p))
    });
    let shown = match &target {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(name) => name.clone(),
    };
    let Some((container, container_port)) = found else {
        return Some(
            Check::failure(
                GROUP,
                format!(
                    "{where_} port {} targets {shown}, which no container of the webhook's Deployment declares",
                    port.port
                ),
            )
            .hint(format!("a named targetPort resolves only to a declared container port: {FAILING}"))
            .fix("make the Service's targetPort the container's https port (manifests/base/service.yaml)"),
        );
    };
    let number = container_port.container_port;
    let named = port_label(container_port);
    Some(match listen_port(container) {
        Some(listen) if listen != number => Check::failure(
            GROUP,
            format!(
                "{where_} port {} targets container port {number}{named}, but serve listens on {listen} (CI_POD_WEBHOOK_LISTEN)",
                port.port
            ),
        )
        .hint(FAILING)
        .fix(format!(
            "make containerPort {listen}, or CI_POD_WEBHOOK_LISTEN 0.0.0.0:{number}, in the Deployment"
        )),
        Some(_) => Check::ok(
            GROUP,
            format!(
                "{where_} port {} targets container port {number}{named}, where serve listens",
                port.port
            ),
        ),
        // Set by a reference (valueFrom) or by arguments: not known from the manifest.
        None => Check::ok(
            GROUP,
            format!("{where_} port {} targets container port {number}{named}", port.port),
        ),
    })
}

fn port_label(port: &ContainerPort) -> String {
    port.name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default()
}

/// The port `serve` listens on in `container`: its `CI_POD_WEBHOOK_LISTEN`, or the
/// default when neither that nor arguments set it; `None` when it cannot be told.
fn listen_port(container: &Container) -> Option<i32> {
    let from_env = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "CI_POD_WEBHOOK_LISTEN");
    match from_env {
        Some(var) => var.value.as_deref()?.rsplit(':').next()?.parse().ok(),
        None if container.args.as_ref().is_none_or(Vec::is_empty) => Some(DEFAULT_LISTEN_PORT),
        None => None,
    }
}

/// Whether the Service's selector picks the Deployment's pods.
fn selects(
    where_: &str,
    selector: Option<&BTreeMap<String, String>>,
    deployment: &Deployment,
) -> Option<Check> {
    // Without a selector the endpoints are managed by hand; the endpoint check tells.
    let selector = selector.filter(|s| !s.is_empty())?;
    let labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let missing: Vec<String> = selector
        .iter()
        .filter(|(k, v)| labels.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    (!missing.is_empty()).then(|| {
        Check::failure(
            GROUP,
            format!(
                "{where_} selects pods labelled {}, which the webhook's pods are not",
                missing.join(", ")
            ),
        )
        .hint(format!("the Service gets no endpoints: {FAILING}"))
        .fix(
            "make the Service's selector the Deployment's pod labels (manifests/base/service.yaml)",
        )
    })
}

/// The ready endpoints of the Service port, across its EndpointSlices.
fn endpoints(
    dialled: &Dialled,
    where_: &str,
    port: &ServicePort,
    slices: Result<&[EndpointSlice], &str>,
) -> Check {
    let slices = match slices {
        Ok(slices) => slices,
        Err(error) => {
            return Check::failure(
                GROUP,
                format!("cannot list the EndpointSlices of {where_}: {error}"),
            )
            .fix(RBAC_FIX);
        }
    };
    let mut ready = 0;
    let mut not_ready = 0;
    let mut numbers = Vec::new();
    for slice in slices {
        // A slice carries the Service port by its name (unnamed when it has one port).
        let Some(number) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or(""))
            .and_then(|p| p.port)
        else {
            continue;
        };
        if !numbers.contains(&number) {
            numbers.push(number);
        }
        for endpoint in &slice.endpoints {
            // "nil should be interpreted as ready" (discovery.k8s.io/v1).
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                not_ready += 1;
            } else {
                ready += 1;
            }
        }
    }
    let on = numbers
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ready == 0 {
        let (namespace, name) = (&dialled.namespace, &dialled.name);
        Check::failure(
            GROUP,
            format!("{where_} has no ready endpoint ({not_ready} not ready)"),
        )
        .hint(format!("the API server finds no webhook pod to call: {FAILING}"))
        .fix(format!(
            "kubectl -n {namespace} get endpointslices -l kubernetes.io/service-name={name} -o wide; kubectl -n {namespace} get pods -o wide"
        ))
    } else if not_ready > 0 {
        Check::warning(
            GROUP,
            format!("{where_}: {ready} ready endpoint(s) on port {on}, {not_ready} not ready"),
        )
    } else {
        Check::ok(
            GROUP,
            format!("{where_}: {ready} ready endpoint(s) on port {on}"),
        )
    }
}

#[cfg(test)]
mod tests;
