//! Socket mode's two mounts (`directory`, `file`), mounts that overlap the daemon's, the
//! socket volume's name and the socket's group.

use super::*;

const FILE_MODE: &str = "defaultClass: a\ndocker: { mount: file, socketPath: /var/run/docker-for-gitlab.sock }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n";

/// The runner's own `docker` volume, as SKA's runners mount the node's main socket.
fn with_runner_docker_mount(mut pod: Value) -> Value {
    pod["spec"]["volumes"] =
        json!([{"name": "docker", "hostPath": {"path": "/var/run/docker.sock", "type": ""}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "docker", "mountPath": "/var/run/docker.sock"}]);
    pod
}

fn docker_host(pod: &Value) -> Option<Value> {
    env(pod, "build")
        .into_iter()
        .find(|(n, _)| *n == "DOCKER_HOST")
        .map(|(_, v)| v.clone())
}

#[test]
fn file_mode_mounts_the_socket_itself_next_to_the_runners_mount() {
    let policy = policy_from(FILE_MODE);
    let out = run_with(
        &policy,
        &Req::default(),
        &with_runner_docker_mount(job_pod()),
    );
    let pod = out.pod();
    assert_eq!(
        pod["spec"]["volumes"],
        json!([
            {"name": "docker", "hostPath": {"path": "/var/run/docker.sock", "type": ""}},
            {"name": "docker-for-gitlab", "hostPath": {"path": "/var/run/docker-for-gitlab.sock", "type": "Socket"}}
        ])
    );
    assert_eq!(
        container(pod, "build")["volumeMounts"],
        json!([
            {"name": "docker", "mountPath": "/var/run/docker.sock"},
            {"name": "docker-for-gitlab", "mountPath": "/var/run/docker-for-gitlab.sock", "readOnly": true}
        ])
    );
    assert_eq!(
        docker_host(pod),
        Some(json!({"name": "DOCKER_HOST", "value": "unix:///var/run/docker-for-gitlab.sock"}))
    );
    assert!(out.warnings().is_empty(), "{:?}", out.warnings());
}

#[test]
fn file_mode_reuses_a_volume_of_the_same_socket() {
    let policy = policy_from(FILE_MODE);
    let mut pod = job_pod();
    pod["spec"]["volumes"] =
        json!([{"name": "gitlab-docker", "hostPath": {"path": "/var/run/docker-for-gitlab.sock"}}]);
    let out = run_with(&policy, &Req::default(), &pod);
    assert_eq!(
        out.pod()["spec"]["volumes"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        container(out.pod(), "build")["volumeMounts"][0]["name"],
        "gitlab-docker"
    );
}

#[test]
fn a_mount_at_a_parent_or_child_path_skips_docker_with_a_warning() {
    // (policy, the container's existing mount path, why it overlaps)
    let directory = DEFAULT.clone();
    let file = policy_from(FILE_MODE);
    let cases = [
        (&directory, "/var/run", "a parent of the daemon's directory"),
        (
            &directory,
            "/var/run/",
            "the same parent, with a trailing /",
        ),
        (
            &directory,
            "/var/run/ci-dind/docker.sock",
            "the socket inside it",
        ),
        (&file, "/var/run", "a parent of the socket"),
        (
            &file,
            "/var/run/docker-for-gitlab.sock/x",
            "a child of the socket",
        ),
    ];
    for (policy, mount_path, why) in cases {
        let mut pod = job_pod();
        pod["spec"]["volumes"] = json!([{"name": "jobs-own", "emptyDir": {}}]);
        pod["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "jobs-own", "mountPath": mount_path}]);
        let out = run_with(policy, &Req::default(), &pod);
        assert_eq!(docker_host(out.pod()), None, "{why}");
        assert_eq!(
            out.pod()["spec"]["volumes"].as_array().map(Vec::len),
            Some(1),
            "{why}: no volume added"
        );
        assert!(
            out.warnings().iter().any(|w| w
                .starts_with("build: \"jobs-own\" is already mounted at")
                && w.contains("DOCKER_HOST not set")),
            "{why}: {:?}",
            out.warnings()
        );
    }
}

#[test]
fn a_jobs_own_mount_at_the_socket_path_is_not_replaced() {
    let policy = policy_from(FILE_MODE);
    let mut pod = job_pod();
    pod["spec"]["volumes"] = json!([{"name": "fake", "emptyDir": {}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "fake", "mountPath": "/var/run/docker-for-gitlab.sock"}]);
    let out = run_with(&policy, &Req::default(), &pod);
    assert_eq!(docker_host(out.pod()), None);
    assert!(
        out.warnings().iter().any(|w| w
            .contains("/var/run/docker-for-gitlab.sock is already mounted from volume \"fake\"")),
        "{:?}",
        out.warnings()
    );
}

#[test]
fn siblings_of_the_socket_do_not_overlap() {
    // /var/run/docker.sock and /var/run/docker.sock.d are siblings of
    // /var/run/docker-for-gitlab.sock, and /var/run/ci-dind-old of /var/run/ci-dind.
    let file = policy_from(FILE_MODE);
    for (policy, mount_path) in [
        (&file, "/var/run/docker.sock.d"),
        (&*DEFAULT, "/var/run/ci-dind-old"),
    ] {
        let mut pod = job_pod();
        pod["spec"]["volumes"] = json!([{"name": "other", "emptyDir": {}}]);
        pod["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "other", "mountPath": mount_path}]);
        let out = run_with(policy, &Req::default(), &pod);
        assert!(docker_host(out.pod()).is_some(), "{mount_path}");
    }
}

// ---- Docker ----

#[test]
fn socket_mode_mounts_the_daemon_directory_and_sets_docker_host() {
    let mut pod = job_pod();
    pod["spec"]["volumes"] =
        json!([{"name": "docker", "hostPath": {"path": "/var/run/docker.sock", "type": ""}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "docker", "mountPath": "/var/run/docker.sock"}]);
    let out = run_with(&NO_LIMITS_ENV, &Req::default(), &pod);
    let pod = out.pod();
    assert_eq!(
        pod["spec"]["volumes"],
        json!([
            {"name": "docker", "hostPath": {"path": "/var/run/docker.sock", "type": ""}},
            {"name": "ci-dind", "hostPath": {"path": "/var/run/ci-dind", "type": "DirectoryOrCreate"}}
        ])
    );
    assert_eq!(
        container(pod, "build")["volumeMounts"],
        json!([
            {"name": "docker", "mountPath": "/var/run/docker.sock"},
            {"name": "ci-dind", "mountPath": "/var/run/ci-dind", "readOnly": true}
        ])
    );
    assert_eq!(
        env(pod, "build").last().map(|(_, v)| (*v).clone()),
        Some(json!({"name": "DOCKER_HOST", "value": "unix:///var/run/ci-dind/docker.sock"}))
    );
    assert!(
        container(pod, "helper").get("env").is_none(),
        "only build gets DOCKER_HOST"
    );
}

#[test]
fn an_existing_docker_host_or_the_opt_out_is_respected() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "DOCKER_HOST", "value": "tcp://docker:2375"}]);
    let out = run_with(&NO_LIMITS_ENV, &Req::default(), &pod);
    assert_eq!(env(out.pod(), "build").len(), 1);
    assert!(out.pod()["spec"].get("volumes").is_none());

    let out = run(&annotate(job_pod(), &[("ci.skao.int/docker", "disabled")]));
    assert!(
        !env(out.pod(), "build")
            .iter()
            .any(|(n, _)| *n == "DOCKER_HOST")
    );
    assert!(out.pod()["spec"].get("volumes").is_none());
}

#[test]
fn an_existing_host_path_volume_for_the_daemon_is_reused() {
    let mut pod = job_pod();
    pod["spec"]["volumes"] = json!([{"name": "dind", "hostPath": {"path": "/var/run/ci-dind/"}}]);
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["volumes"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        container(out.pod(), "build")["volumeMounts"][0]["name"],
        "dind"
    );
}

#[test]
fn a_conflicting_volume_name_or_mount_path_skips_docker_with_a_warning() {
    let mut pod = job_pod();
    pod["spec"]["volumes"] = json!([{"name": "ci-dind", "emptyDir": {}}]);
    let out = run(&pod);
    assert!(
        !env(out.pod(), "build")
            .iter()
            .any(|(n, _)| *n == "DOCKER_HOST")
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("volume ci-dind already exists"))
    );

    let mut pod = job_pod();
    pod["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "scratch", "mountPath": "/var/run/ci-dind"}]);
    let out = run(&pod);
    assert!(
        !env(out.pod(), "build")
            .iter()
            .any(|(n, _)| *n == "DOCKER_HOST")
    );
    assert_eq!(
        out.pod()["spec"]["volumes"].as_array().map(Vec::len),
        Some(1),
        "no unused volume added"
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("/var/run/ci-dind is already mounted from volume \"scratch\""))
    );
}

#[test]
fn tcp_mode_puts_node_ip_before_docker_host() {
    let policy = policy_from(
        "defaultClass: a\ndocker: { mode: tcp, tcp: { port: 2376, tls: { secretName: dind-client } } }\nlimitsEnv: { enabled: false }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
    );
    let out = run_with(&policy, &Req::default(), &job_pod());
    let names: Vec<&str> = env(out.pod(), "build").iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "CI",
            "NODE_IP",
            "DOCKER_HOST",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH"
        ]
    );
    let vars = env(out.pod(), "build");
    assert_eq!(
        vars[1].1["valueFrom"]["fieldRef"]["fieldPath"],
        "status.hostIP"
    );
    assert_eq!(vars[2].1["value"], "tcp://$(NODE_IP):2376");
    assert_eq!(vars[4].1["value"], "/certs/client");
    assert_eq!(
        out.pod()["spec"]["volumes"],
        json!([{"name": "ci-dind-certs", "secret": {"secretName": "dind-client"}}])
    );

    // An existing NODE_IP from the host IP is reused; any other NODE_IP blocks DOCKER_HOST.
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]);
    let plain = policy_from(
        "defaultClass: a\ndocker: { mode: tcp }\nlimitsEnv: { enabled: false }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
    );
    let names: Vec<String> = env(run_with(&plain, &Req::default(), &pod).pod(), "build")
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(names, ["NODE_IP", "DOCKER_HOST"]);
    pod["spec"]["containers"][0]["env"] = json!([{"name": "NODE_IP", "value": "10.0.0.1"}]);
    let out = run_with(&plain, &Req::default(), &pod);
    assert_eq!(env(out.pod(), "build").len(), 1);
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("NODE_IP is already set"))
    );
}

#[test]
fn docker_mode_off_changes_nothing_about_docker() {
    let policy = policy_from(
        "defaultClass: a\ndocker: { mode: off }\nlimitsEnv: { enabled: false }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
    );
    let out = run_with(&policy, &Req::default(), &job_pod());
    assert_eq!(env(out.pod(), "build").len(), 1);
}

// ---- the socket's group (socketGroup) ----

const FILE_MODE_GROUP: &str = "defaultClass: a\ndocker: { mount: file, socketPath: /var/run/docker-for-gitlab.sock, socketGroup: 105 }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n";

#[test]
fn the_socket_group_joins_the_pods_supplemental_groups_as_a_set() {
    let policy = policy_from(FILE_MODE_GROUP);
    // (the pod's securityContext, the one after)
    let cases = [
        (None, json!({"supplementalGroups": [105]})),
        (Some(json!({})), json!({"supplementalGroups": [105]})),
        (
            Some(json!({"runAsUser": 1000, "supplementalGroups": null})),
            json!({"runAsUser": 1000, "supplementalGroups": [105]}),
        ),
        (
            Some(json!({"supplementalGroups": [2000]})),
            json!({"supplementalGroups": [2000, 105]}),
        ),
        (
            Some(json!({"supplementalGroups": [105, 2000]})),
            json!({"supplementalGroups": [105, 2000]}),
        ),
    ];
    for (before, after) in cases {
        let mut pod = job_pod();
        if let Some(context) = &before {
            pod["spec"]["securityContext"] = context.clone();
        }
        // run_with also checks that a second pass changes nothing.
        let out = run_with(&policy, &Req::default(), &pod);
        assert_eq!(
            out.pod()["spec"]["securityContext"],
            after,
            "from {before:?}"
        );
        assert!(docker_host(out.pod()).is_some());
    }
}

#[test]
fn the_socket_group_is_added_only_with_the_socket() {
    let policy = policy_from(FILE_MODE_GROUP);
    let mut own_docker_host = job_pod();
    own_docker_host["spec"]["containers"][0]["env"] =
        json!([{"name": "DOCKER_HOST", "value": "tcp://docker:2375"}]);
    let mut overlapping = job_pod();
    overlapping["spec"]["volumes"] = json!([{"name": "run", "emptyDir": {}}]);
    overlapping["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "run", "mountPath": "/var/run"}]);
    let opted_out = annotate(job_pod(), &[("ci.skao.int/docker", "disabled")]);
    for (pod, why) in [
        (own_docker_host, "the container sets DOCKER_HOST itself"),
        (overlapping, "a mount of the job's own overlaps the socket"),
        (opted_out, "the job opted out"),
    ] {
        let out = run_with(&policy, &Req::default(), &pod);
        assert!(
            out.pod()["spec"].get("securityContext").is_none(),
            "{why}: {}",
            out.pod()["spec"]
        );
    }
}

#[test]
fn without_a_socket_group_the_pods_groups_are_left_alone() {
    let out = run_with(&policy_from(FILE_MODE), &Req::default(), &job_pod());
    assert!(docker_host(out.pod()).is_some());
    assert!(out.pod()["spec"].get("securityContext").is_none());
}

// ---- the socket volume's name ----

#[test]
fn the_socket_volume_is_named_after_the_socket_unless_the_policy_names_it() {
    // (docker section, the volume's name)
    let cases = [
        (
            "{ mount: file, socketPath: /var/run/docker-for-gitlab.sock }",
            "docker-for-gitlab",
        ),
        ("{ socketPath: /var/run/ci-dind/docker.sock }", "ci-dind"),
        ("{ socketPath: /run/Docker_CI/docker.sock }", "docker-ci"),
        (
            "{ mount: file, socketPath: /srv/ci/.sock }",
            "docker-socket",
        ),
        (
            "{ mount: file, socketPath: /var/run/docker-for-gitlab.sock, volumeName: gitlab-docker }",
            "gitlab-docker",
        ),
    ];
    for (docker, name) in cases {
        let policy = policy_from(&format!(
            "defaultClass: a\ndocker: {docker}\nclasses:\n  a: {{ max: {{ cpu: null, memory: null }} }}\n"
        ));
        let out = run_with(&policy, &Req::default(), &job_pod());
        assert_eq!(out.pod()["spec"]["volumes"][0]["name"], name, "{docker}");
        assert_eq!(
            container(out.pod(), "build")["volumeMounts"][0]["name"],
            name,
            "{docker}"
        );
    }
}

#[test]
fn a_pod_patched_with_the_old_volume_name_keeps_it() {
    // Before the name followed the socket, a file-mode policy without volumeName added
    // volume ci-dind. Such a pod, sent again, is left as it is: the volume of the same
    // socket is reused whatever its name.
    let mut pod = job_pod();
    pod["spec"]["volumes"] = json!([{"name": "ci-dind", "hostPath": {"path": "/var/run/docker-for-gitlab.sock", "type": "Socket"}}]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "ci-dind", "mountPath": "/var/run/docker-for-gitlab.sock", "readOnly": true}]);
    let out = run_with(&policy_from(FILE_MODE), &Req::default(), &pod);
    assert_eq!(
        out.pod()["spec"]["volumes"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(docker_host(out.pod()).is_some());
}
