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
    ];
    assert_problems_located(cases);
}
