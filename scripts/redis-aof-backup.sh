#!/bin/sh
# Back up a running Redis' append-only files: writes a tar of its AOF directory (the base file,
# the incremental files and their manifest) to standard output. Runs where redis-server runs; for
# the chart's Redis (docs/operations.md, "Backup and restore"):
#
#   kubectl -n hookfan exec hookfan-redis-0 -c redis -- \
#     sh -c "$(cat scripts/redis-aof-backup.sh)" backup > hookfan-aof-$(date +%F).tar
#
# Automatic AOF rewrites are paused while the files are read (a rewrite replaces them), and
# resumed afterwards whatever happens. With appendfsync always every acknowledged write is in the
# files; a command half-written at the end is dropped when the copy is loaded
# (aof-load-truncated yes, Redis' default). The password: REDISCLI_AUTH, else the file the chart
# mounts. REDIS_PORT: default 6379.
set -eu
if [ -z "${REDISCLI_AUTH:-}" ] && [ -r /etc/hookfan/redis/password ]; then
    REDISCLI_AUTH=$(cat /etc/hookfan/redis/password)
    export REDISCLI_AUTH
fi
cli() { redis-cli -p "${REDIS_PORT:-6379}" "$@"; }
setting() { cli CONFIG GET "$1" | sed -n 2p; }

dir=$(setting dir)
aofdir=$(setting appenddirname)
[ "$(setting appendonly)" = yes ] || { echo "backup: appendonly is not yes: there is no AOF to back up" >&2; exit 1; }
rewrite=$(setting auto-aof-rewrite-percentage)
cli CONFIG SET auto-aof-rewrite-percentage 0 >/dev/null
trap 'cli CONFIG SET auto-aof-rewrite-percentage "$rewrite" >/dev/null' EXIT
# A rewrite already running finishes first: its files are not final until it does.
while cli INFO persistence | grep -Eq '^aof_rewrite_(in_progress|scheduled):1'; do
    sleep 1
done
tar -C "$dir" -cf - "$aofdir"
