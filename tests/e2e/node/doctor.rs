//! `doctor --pre` on the node: a class whose CPU limit is above the node's CPUs is
//! warned about (JOB_CPUS would promise the job more than the node has); a class within
//! them is not.

use super::{SMALL_MEMORY, ska};
use crate::support::e2e::*;

#[tokio::test]
#[ignore = "e2e on a real node: needs root, KUBEBUILDER_ASSETS with kubelet and kube-controller-manager, and the packages docs/e2e.md lists"]
async fn doctor_warns_of_a_cpu_limit_above_the_nodes_cpus() {
    let node = Node::take_turn().await;
    let policy = node.state.join("doctor-policy.yaml");
    std::fs::write(&policy, ska(docker_group())).expect("write the policy");
    let policy_arg = format!("--policy={}", policy.display());
    let (_, checks) = doctor(node.cp.kubeconfig(), &["--pre", &policy_arg]);
    let warnings: Vec<&str> = checks
        .iter()
        .filter(|c| c["status"] == "warning")
        .filter_map(|c| c["message"].as_str())
        .collect();
    let cpus = node.allocatable_cpus;
    assert!(
        cpus < 3,
        "the test needs a node with fewer than 3 CPUs, not {cpus}"
    );
    let expected = format!(
        "class ska-k8srunner-dp: CPU limit above what 1 of its 1 node(s) can give ({}: {cpus} allocatable CPUs; limits build 3, helper 3, services 3)",
        node.name
    );
    assert!(warnings.contains(&expected.as_str()), "{warnings:#?}");
    assert!(
        !warnings
            .iter()
            .any(|w| w.starts_with(&format!("class {SMALL_MEMORY}:"))),
        "{warnings:#?}"
    );
}
