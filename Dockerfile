# ci-pod-webhook image: a release build on Debian 12, copied into distroless/cc.
#
#   docker build -t ci-pod-webhook:0.1.0 \
#       --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Builds with docker, podman or buildah (it uses no BuildKit-only instruction), from two
# base images only: rust:1.95.0-bookworm and gcr.io/distroless/cc-debian12:nonroot (no
# `# syntax=` line, which would make BuildKit pull a frontend image too). Besides them it
# fetches the crates of Cargo.lock from crates.io, and nothing else: no toolchain, no
# component, no rustup self-update. Where Docker Hub and gcr.io cannot be reached,
# scripts/build-image.sh builds this file unchanged with podman on stand-ins made from
# Debian's packages (docs/deploy.md, "Building the image without Docker Hub").
#
# The build context is the repository root. .dockerignore admits only what cargo needs:
# Cargo.toml, Cargo.lock, rust-toolchain.toml, build.rs and src/, plus benches/,
# examples/ and tests/, which `cargo build` does not compile but whose declared
# [[bench]]/[[example]]/[[test]] targets must exist for cargo to accept the manifest.

# Keep in step with rust-toolchain.toml, so the image already holds the pinned toolchain.
ARG RUST_VERSION=1.95.0

# ---------------------------------------------------------------------------------------
# skeleton: the crate's manifest and file layout with every Rust source emptied. Its
# content changes only when Cargo.toml, Cargo.lock or the set of files changes, so the
# dependency build below stays cached across ordinary source edits. (BuildKit keys
# COPY on file content and mode, not timestamps.)
FROM rust:${RUST_VERSION}-bookworm AS skeleton
WORKDIR /src
COPY . .
RUN set -eu; \
    find . -type f -name '*.rs' -exec truncate -s 0 {} +; \
    # Binaries and build scripts need a main; libraries and modules may be empty.
    for f in src/main.rs src/bin/*.rs build.rs; do \
        if [ -f "$f" ]; then echo 'fn main() {}' > "$f"; fi; \
    done

# ---------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
ARG RUST_VERSION
WORKDIR /src

# The image's own toolchain, whatever rust-toolchain.toml asks for: that file also lists
# rustfmt and clippy, which rustup would download (and `rustup toolchain install` would
# update rustup itself first), though the build needs neither. The pin is checked
# instead: a RUST_VERSION out of step with it fails here, saying so.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION}
COPY rust-toolchain.toml ./
RUN grep -qx "channel = \"${RUST_VERSION}\"" rust-toolchain.toml \
        || { echo "RUST_VERSION ${RUST_VERSION} is not the channel of rust-toolchain.toml:" >&2; \
             cat rust-toolchain.toml >&2; exit 1; } \
    && rustc --version && cargo --version

# A smaller binary: drop debug info (mostly the standard library's) but keep symbol
# names, so backtraces stay readable. Only this build; Cargo.toml is left as it is.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo

# Dependencies only, from the skeleton: the slow layer, rebuilt when Cargo.lock changes.
COPY --from=skeleton /src ./
RUN cargo build --release --locked

# The workspace's own crates. The skeleton's artifacts of them (built from emptied
# sources) are newer than the real sources, so cargo would consider them fresh: remove
# them first, every member's (the core crate's were missed once: the build then failed
# with "no `policy` in `ci_pod_webhook_core`").
COPY . .
RUN cargo clean --release --package ci-pod-webhook --package ci-pod-webhook-core \
    && cargo build --release --locked \
    # Smoke test: the binary runs and its embedded policy is valid.
    && ./target/release/ci-pod-webhook default-policy > /tmp/policy.yaml \
    && ./target/release/ci-pod-webhook check-policy /tmp/policy.yaml

# ---------------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc_s, CA certificates and a `nonroot` (65532) user; no shell,
# no package manager. Debian 12 on both sides, so the binary's glibc symbols resolve.
#
# Why not a static binary on `static` or `scratch`: a musl build needs a musl C toolchain
# for ring's C and assembly (mimalloc, the binary's allocator, is C too); a static glibc
# binary still needs the shared NSS modules at run time for
# getaddrinfo (DNS), which glibc does not support in static programs. The dynamic glibc
# binary on distroless/cc costs about 20 MB of base image and avoids all of that.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=""
LABEL org.opencontainers.image.title="ci-pod-webhook" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that applies runner-class policy to GitLab CI job pods" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /src/target/release/ci-pod-webhook /ci-pod-webhook

# Numeric, so the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532

# 8443: HTTPS /mutate for the API server. 8080: plain HTTP /livez, /readyz, /metrics.
EXPOSE 8443 8080

# The Deployment configures it through the CI_POD_WEBHOOK_* environment variables
# (policy and TLS files mounted under /etc/ci-pod-webhook/). With none set, `serve`
# runs the embedded policy on a generated development certificate.
ENTRYPOINT ["/ci-pod-webhook", "serve"]
