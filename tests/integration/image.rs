//! The Dockerfile, read rather than built: its build context holds what cargo reads.

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
