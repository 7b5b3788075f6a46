#!/bin/sh
# Part of the docker:28.4.0-dind stand-in that scripts/node/images.sh builds for the e2e
# tests (docs/e2e.md says how it differs from the real image).
# Stand-in for docker-library's dockerd-entrypoint.sh (docker:28.x-dind), same decisions:
#  - no args or first arg a flag: prepend dockerd --host=unix:///var/run/docker.sock and
#    tcp://0.0.0.0:2375 (TLS off: DOCKER_TLS_CERTDIR="") or :2376 + TLS certs (not implemented here)
#  - first arg `dockerd`: run exactly the given args (the manifest's case)
#  - remove stale docker*.pid, pick iptables-legacy if legacy rules exist or nft fails,
#    then exec /usr/local/bin/dind "$@"
set -eu
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	sock=unix:///var/run/docker.sock
	case "${DOCKER_HOST:-}" in unix://*) sock=$DOCKER_HOST;; esac
	if [ -n "${DOCKER_TLS_CERTDIR:-}" ]; then
		echo >&2 "stand-in: TLS cert generation not implemented; DOCKER_TLS_CERTDIR='' expected"; exit 1
	fi
	set -- dockerd --host="$sock" --host=tcp://0.0.0.0:2375 "$@"
fi
if [ "$1" = dockerd ]; then
	find /run /var/run -iname 'docker*.pid' -delete 2>/dev/null || :
	legacy=
	if [ -n "${DOCKER_IPTABLES_LEGACY+x}" ]; then legacy=$DOCKER_IPTABLES_LEGACY
	elif (for f in /proc/net/ip_tables_names /proc/net/ip6_tables_names; do [ -n "$(cat $f 2>/dev/null)" ] && exit 0; done; exit 1); then legacy=1
	elif ! iptables -nL >/dev/null 2>&1; then /usr/local/sbin/.iptables-legacy/iptables -nL >/dev/null 2>&1 && legacy=1
	fi
	[ -n "$legacy" ] && export PATH="/usr/local/sbin/.iptables-legacy:$PATH"
	iptables --version
	[ -x /usr/local/bin/dind ] && set -- /usr/local/bin/dind "$@"
else
	set -- docker-entrypoint.sh "$@"
fi
exec "$@"
