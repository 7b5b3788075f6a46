use super::*;

#[test]
fn normalising_removes_dots_empty_segments_and_trailing_slashes() {
    for (input, want) in [
        ("/var/run/x.sock", "/var/run/x.sock"),
        ("//var//run/x.sock", "/var/run/x.sock"),
        ("/var/run/x/", "/var/run/x"),
        ("/var/./run/x", "/var/run/x"),
        ("/var/run/ci/../../../etc/x", "/etc/x"),
        ("/../../x", "/x"),
        ("/", "/"),
    ] {
        assert_eq!(normalise(input).as_deref(), Some(want), "{input}");
    }
    assert_eq!(normalise("var/run/x"), None);
    assert_eq!(normalise(""), None);
}

#[test]
fn sockets_in_sensitive_trees_are_refused_in_every_spelling() {
    for (path, tree) in [
        ("/proc/1/root/run/docker.sock", "/proc"),
        ("/sys/fs/x.sock", "/sys"),
        ("/dev/log", "/dev"),
        ("/boot/x.sock", "/boot"),
        ("/etc/docker.sock", "/etc"),
        ("/etc", "/etc"),
        ("/home/ci/docker.sock", "/home"),
        ("/root/docker.sock", "/root"),
        ("/usr/local/docker.sock", "/usr"),
        (
            "/var/lib/kubelet/device-plugins/kubelet.sock",
            "/var/lib/kubelet",
        ),
        ("/var/lib/etcd/x.sock", "/var/lib/etcd"),
        ("/var/lib/docker/x.sock", "/var/lib/docker"),
        ("/var/log/pods/x.sock", "/var/log"),
        ("/run/containerd/containerd.sock", "/run/containerd"),
        ("/var/run/containerd/containerd.sock", "/run/containerd"),
        ("/var/run/crio/crio.sock", "/run/crio"),
        // Spelled around the check: normalised first.
        ("/var/run/ci/../../../etc/docker.sock", "/etc"),
        ("//etc/docker.sock", "/etc"),
        ("/var/lib/./kubelet/x.sock", "/var/lib/kubelet"),
    ] {
        assert_eq!(
            check_socket_path(path),
            Err(PathProblem::Sensitive { tree }),
            "{path}"
        );
    }
}

#[test]
fn look_alike_names_are_not_inside_a_tree() {
    for path in [
        "/etcd-socket/docker.sock",
        "/var/lib/docker-for-gitlab/docker.sock",
        "/var/lib/kubelet2/x.sock",
        "/var/run/docker-for-gitlab.sock",
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/var/run/ci-dind/docker.sock",
    ] {
        assert_eq!(check_socket_path(path), Ok(()), "{path}");
    }
}

#[test]
fn relative_and_unnormalised_paths_are_refused_with_the_normal_form() {
    assert_eq!(
        check_socket_path("var/run/x.sock"),
        Err(PathProblem::Relative)
    );
    assert_eq!(
        check_socket_path("/var/run//ci-dind/docker.sock"),
        Err(PathProblem::NotNormalised {
            normalised: Some("/var/run/ci-dind/docker.sock".into())
        })
    );
    assert_eq!(
        check_socket_path("/var/run/ci-dind/"),
        Err(PathProblem::NotNormalised {
            normalised: Some("/var/run/ci-dind".into())
        })
    );
    assert_eq!(
        check_socket_path("/x/.."),
        Err(PathProblem::NotNormalised { normalised: None })
    );
    assert_eq!(
        check_socket_path("/"),
        Err(PathProblem::NotNormalised { normalised: None })
    );
}

#[test]
fn shared_directories_are_the_root_top_level_and_the_listed_ones() {
    for dir in [
        "/",
        "/run",
        "/var/run",
        "/var",
        "/var/lib",
        "/tmp",
        "/dev",
        "/etc",
        "/home",
        "/root",
        "/usr",
        "/proc",
        "/sys",
        "/boot",
        "/opt",
        "/srv",
        "/mnt",
        "/var/tmp",
        "/run/user",
        "/run/user/1000",
        "/var/run/user/0",
        "/run/lock",
        "/var/lock",
        "/run/docker",
        "/var/run/docker",
        "/etc/docker",
        "/var/lib/kubelet/pods",
        "/usr/local/run",
    ] {
        assert!(is_shared_directory(dir), "{dir} is shared");
    }
    for dir in [
        "/var/run/ci-dind",
        "/run/ci-dind",
        "/var/run/docker-for-gitlab",
        "/run/user/1000/docker",
        "/var/lib/ci-dind-socket",
    ] {
        assert!(!is_shared_directory(dir), "{dir} may be dedicated");
    }
}

/// The policy file with `docker` set to `docker`, one class with explicit ceilings.
fn policy(docker: &str) -> Result<crate::policy::Policy, String> {
    let yaml = format!(
        "defaultClass: a\ndocker: {docker}\nclasses:\n  a: {{ max: {{ cpu: null, memory: null }} }}\n"
    );
    crate::policy::Policy::parse(&yaml, "p.yaml").map_err(|e| e.to_string())
}

#[test]
fn a_shared_socket_directory_is_refused_naming_it_and_suggesting_file_mode() {
    for (docker, dir) in [
        (
            "{ socketPath: /var/run/docker-for-gitlab.sock }",
            "/var/run",
        ),
        (
            "{ mode: socket, mount: directory, socketPath: /run/docker.sock }",
            "/run",
        ),
        ("{ socketPath: /tmp/docker.sock }", "/tmp"),
        ("{ socketPath: /docker.sock }", "/"),
        ("{ socketPath: /var/lib/docker.sock }", "/var/lib"),
        ("{ socketPath: /opt/docker.sock }", "/opt"),
        (
            "{ socketPath: /run/user/1000/docker.sock }",
            "/run/user/1000",
        ),
    ] {
        let error = policy(docker).expect_err(docker);
        assert!(error.starts_with("p.yaml:2:"), "{error}");
        assert!(
            error.contains(&format!("is in {dir}, a directory other programs share")),
            "{error}"
        );
        assert!(error.contains("`mount: file`"), "{error}");
    }
}

#[test]
fn file_mode_mounts_a_socket_in_a_shared_directory() {
    let p = policy("{ mount: file, socketPath: /var/run/docker-for-gitlab.sock }").expect("valid");
    assert_eq!(
        p.docker.mode,
        crate::policy::DockerMode::Socket {
            socket_path: "/var/run/docker-for-gitlab.sock".into(),
            mount: crate::policy::SocketMount::File,
            host_path: "/var/run/docker-for-gitlab.sock".into(),
            volume_name: "docker-for-gitlab".into(),
            group: None,
        }
    );
}

#[test]
fn a_dedicated_directory_may_be_mounted() {
    let p = policy("{ socketPath: /var/run/ci-dind/docker.sock }").expect("valid");
    let crate::policy::DockerMode::Socket { host_path, .. } = &p.docker.mode else {
        panic!("socket mode");
    };
    assert_eq!(host_path, "/var/run/ci-dind");
}

#[test]
fn sensitive_trees_are_refused_in_file_mode_too() {
    for path in [
        "/proc/1/root/var/run/docker.sock",
        "/etc/docker.sock",
        "/home/ci/docker.sock",
        "/var/lib/kubelet/device-plugins/kubelet.sock",
        "/var/run/containerd/containerd.sock",
        "/var/run/ci-dind/../../../etc/docker.sock",
    ] {
        for mount in ["file", "directory"] {
            let error =
                policy(&format!("{{ mount: {mount}, socketPath: {path:?} }}")).expect_err(path);
            assert!(
                error.contains("which holds the node's own files"),
                "{error}"
            );
        }
    }
}

#[test]
fn relative_and_unnormalised_socket_paths_are_refused() {
    let error = policy("{ mount: file, socketPath: var/run/docker.sock }").expect_err("relative");
    assert!(error.contains("is not an absolute path"), "{error}");
    let error =
        policy("{ mount: file, socketPath: /var/run//docker.sock }").expect_err("double slash");
    assert!(error.contains("write \"/var/run/docker.sock\""), "{error}");
    let error = policy("{ socketPath: / }").expect_err("root");
    assert!(
        error.contains("is not the path of a socket file"),
        "{error}"
    );
    let error = policy("{ mode: tcp, mount: file }").expect_err("mount without socket");
    assert!(
        error.contains("docker.mount: applies to mode: socket only"),
        "{error}"
    );
    let error = policy("{ mount: socket }").expect_err("unknown mount");
    assert!(
        error.contains("unknown variant `socket`, expected one of directory, file"),
        "{error}"
    );
}
