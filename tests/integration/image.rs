//! The Dockerfile, read rather than built (`scripts/build-image.sh` builds and runs it;
//! too slow for every run, docs/development.md says when): its build context holds what
//! cargo reads, its crate build does not reuse the skeleton's empty crates, it reaches
//! for nothing but its two base images and crates.io, its toolchain is the pinned one,
//! and its last stage has the user, entrypoint and ports manifests/base's Deployment
//! runs it with (docs/deploy.md, "Building the image without Docker Hub").

use std::path::Path;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// Whether `.dockerignore` (an allow-list: `*`, then `!name` lines) admits `path`.
fn admitted(dockerignore: &str, path: &str) -> bool {
    let first = path
        .trim_start_matches("./")
        .split('/')
        .next()
        .unwrap_or_default();
    dockerignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .any(|allowed| allowed.trim_end_matches('/') == first)
}

#[test]
fn the_build_context_holds_every_workspace_member_and_path_dependency() {
    // The core crate's move to crates/core left it out once: the Dockerfile's cargo
    // build then failed with "failed to read /src/crates/core/Cargo.toml".
    let dockerignore = repo_file(".dockerignore");
    assert!(
        dockerignore.lines().any(|l| l.trim() == "*"),
        "an allow-list"
    );
    // Every path Cargo.toml names: workspace members, path dependencies, and the
    // sources of its targets ([lib], [[bin]], [[bench]], [[example]], [[test]]).
    let manifest = repo_file("Cargo.toml");
    let quoted = |text: &str| -> Vec<String> {
        text.split('"')
            .skip(1)
            .step_by(2)
            .map(ToString::to_string)
            .collect()
    };
    let mut paths: Vec<String> = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if let Some(members) = line.strip_prefix("members = ") {
            paths.extend(quoted(members).into_iter().filter(|m| m != "."));
        }
        if let Some(at) = line.find("path = ") {
            paths.extend(quoted(&line[at..]).into_iter().take(1));
        }
    }
    assert!(paths.iter().any(|p| p == "crates/core"), "{paths:?}");
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "src/main.rs",
    ]
    .iter()
    .map(ToString::to_string)
    .chain(paths)
    {
        assert!(
            admitted(&dockerignore, &path),
            ".dockerignore leaves out {path}, which cargo reads"
        );
    }
}

#[test]
fn the_crate_build_cleans_every_workspace_members_skeleton_artifacts() {
    // The skeleton stage empties every .rs file to build the dependencies alone; a
    // member whose empty build is not cleaned counts as fresh, and the real build then
    // fails against it (the core crate's once: "no `policy` in `ci_pod_webhook_core`").
    let dockerfile = repo_file("Dockerfile");
    let clean = dockerfile
        .lines()
        .find(|l| l.contains("cargo clean --release"))
        .expect("a cargo clean before the crate build");
    let members = repo_file("Cargo.toml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("members = ").map(str::to_string))
        .expect("workspace members");
    for member in members.split('"').skip(1).step_by(2) {
        let manifest = repo_file(&format!("{member}/Cargo.toml"));
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"'))
            .expect("a package name");
        assert!(
            clean
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["--package", name]),
            "the Dockerfile's cargo clean leaves {name}'s skeleton build: {clean}"
        );
    }
}

#[test]
fn the_build_fetches_nothing_but_its_base_images_and_the_crates() {
    let dockerfile = repo_file("Dockerfile");
    for line in dockerfile.lines() {
        assert!(
            !line.trim_start().starts_with("# syntax="),
            "a syntax line makes BuildKit pull a frontend image: {line}"
        );
        let command = line.trim_start();
        if command.starts_with('#') {
            continue;
        }
        assert!(
            !(command.contains("rustup toolchain install")
                || command.contains("rustup component")
                || command.contains("rustup update")
                || command.contains("rustup self")),
            "rustup downloads or updates: {line}"
        );
    }
    let bases: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|l| l.split_whitespace().next().expect("an image"))
        .collect();
    assert_eq!(
        bases,
        [
            "rust:${RUST_VERSION}-bookworm",
            "rust:${RUST_VERSION}-bookworm",
            "gcr.io/distroless/cc-debian12:nonroot"
        ]
    );
    assert!(dockerfile.contains("ENV RUSTUP_TOOLCHAIN=${RUST_VERSION}"));
}

#[test]
fn the_toolchain_is_the_pinned_one_in_the_dockerfile_and_its_stand_in() {
    let toolchain = repo_file("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .map(|c| c.trim_matches('"'))
        .expect("a channel");
    assert!(
        repo_file("Dockerfile").contains(&format!("ARG RUST_VERSION={channel}\n")),
        "the Dockerfile's RUST_VERSION is not {channel}"
    );
    assert!(
        repo_file("scripts/image/rust.Containerfile")
            .contains(&format!("RUST_VERSION={channel}\n")),
        "scripts/image/rust.Containerfile is not at {channel}"
    );
    assert!(
        repo_file("scripts/build-image.sh").contains(&format!("\nrust_version={channel}\n")),
        "scripts/build-image.sh names the stand-in for another toolchain than {channel}"
    );
}

#[test]
fn the_last_stage_runs_as_the_deployment_expects() {
    let dockerfile = repo_file("Dockerfile");
    let last = dockerfile.rsplit("\nFROM ").next().expect("a last stage");
    for line in [
        "USER 65532:65532",
        "EXPOSE 8443 8080",
        r#"ENTRYPOINT ["/ci-pod-webhook", "serve"]"#,
        "COPY --from=builder /src/target/release/ci-pod-webhook /ci-pod-webhook",
    ] {
        assert!(
            last.lines().any(|l| l.trim() == line),
            "the last stage lacks {line:?}"
        );
    }
}
