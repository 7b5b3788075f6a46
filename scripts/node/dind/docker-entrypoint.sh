#!/bin/sh
# Part of the docker:28.4.0-dind stand-in that scripts/node/images.sh builds for the e2e
# tests (docs/e2e.md says how it differs from the real image).
# Stand-in for docker-library's docker-entrypoint.sh: flags -> `docker FLAGS`; else run as is.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then set -- docker "$@"; fi
exec "$@"
