//! The `docker` section (its host-path rules are tested in `host_paths/tests.rs`).

use crate::policy::tests::assert_problems_located;

#[test]
fn wrong_docker_settings_are_rejected_with_file_line_and_key() {
    let cases: &[(&str, &str, u64)] = &[
        (
            "defaultClass: a\ndocker: { mode: socket, socketPath: relative/docker.sock }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "docker.socketPath",
            2,
        ),
        (
            "defaultClass: a\ndocker: { mode: carrier-pigeon }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "carrier-pigeon",
            2,
        ),
        (
            "defaultClass: a\ndocker:\n  mode: socket\n  socketGroup: 0\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "docker.socketGroup: 0 is root's group",
            4,
        ),
        (
            "defaultClass: a\ndocker:\n  socketGroup: -5\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "docker.socketGroup: -5 is not a group id",
            3,
        ),
        (
            "defaultClass: a\ndocker:\n  socketGroup: 2147483648\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "docker.socketGroup: 2147483648 is not a group id",
            3,
        ),
        (
            "defaultClass: a\ndocker:\n  mode: tcp\n  socketGroup: 105\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
            "docker.socketGroup: applies to mode: socket only",
            4,
        ),
    ];
    assert_problems_located(cases);
}

#[test]
fn a_socket_group_is_kept_as_its_gid() {
    let policy = crate::policy::Policy::parse(
        "defaultClass: a\ndocker: { socketGroup: 2375 }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
        "policy.yaml",
    )
    .expect("valid");
    let crate::policy::DockerMode::Socket { group, .. } = policy.docker.mode else {
        panic!("socket mode");
    };
    assert_eq!(group, Some(2375));
}
