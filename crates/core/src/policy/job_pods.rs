//! `jobPods`: how a pod is recognised as a GitLab Runner job pod, the only pods runner
//! classes apply to: by its containers, or by the runner's label. Absent from the
//! policy: `build` and `helper`, or `manager.runner.gitlab.com/name`; an empty
//! `orLabel` turns the label test off.

use serde::Deserialize;

use super::names::{is_dns_label, is_qualified_name};
use super::raw::S;
use super::validate::Validator;

const DEFAULT_RUNNER_LABEL: &str = "manager.runner.gitlab.com/name";

/// How a pod is recognised as a GitLab Runner job pod.
#[derive(Debug, Clone)]
pub struct JobPodTest {
    /// All of these containers present → job pod.
    pub containers: Vec<String>,
    /// Or this label present → job pod.
    pub or_label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawJobPods {
    pub containers: Option<S<Vec<String>>>,
    pub or_label: Option<S<String>>,
}

impl Validator<'_> {
    pub(super) fn job_pods(&mut self, raw: Option<RawJobPods>) -> JobPodTest {
        let raw = raw.unwrap_or(RawJobPods {
            containers: None,
            or_label: None,
        });
        let containers = match raw.containers {
            Some(c) => {
                if c.value.is_empty() || !c.value.iter().all(|n| is_dns_label(n)) {
                    self.problem(
                        &c,
                        "jobPods.containers: give one or more container names (DNS labels)",
                    );
                }
                c.value
            }
            None => vec!["build".to_string(), "helper".to_string()],
        };
        let or_label = match raw.or_label {
            Some(l) if l.value.is_empty() => None,
            Some(l) => {
                if !is_qualified_name(&l.value) {
                    self.problem(
                        &l,
                        format!("jobPods.orLabel: {:?} is not a valid label key", l.value),
                    );
                }
                Some(l.value)
            }
            None => Some(DEFAULT_RUNNER_LABEL.to_string()),
        };
        JobPodTest {
            containers,
            or_label,
        }
    }
}
