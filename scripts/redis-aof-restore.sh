#!/bin/sh
# Restore a backup made by redis-aof-backup.sh: reads the tar on standard input and unpacks it
# into DIR (default /data), the directory Redis runs in. Redis must be stopped (a running one
# keeps writing its own files and would overwrite the restored ones). The AOF directory found
# there is kept beside it as <name>.before-restore. For the chart's Redis, from a pod that mounts
# its volume (docs/operations.md, "Backup and restore"):
#
#   kubectl -n hookfan exec -i aof-restore -- \
#     sh -c "$(cat scripts/redis-aof-restore.sh)" restore /data < hookfan-aof-2026-11-30.tar
#
# Then start Redis on DIR with appendonly yes and the same appenddirname (the chart's defaults).
set -eu
dir=${1:-/data}
[ -d "$dir" ] || { echo "restore: $dir is not a directory" >&2; exit 1; }
staging="$dir/.restore.$$"
mkdir "$staging"
trap 'rm -rf "$staging"' EXIT
tar -C "$staging" -xf -
set -- "$staging"/*
if ! { [ "$#" = 1 ] && [ -d "$1" ] && ls "$1"/*.manifest >/dev/null 2>&1; }; then
    echo "restore: the input is not a backup of one AOF directory with its manifest" >&2
    exit 1
fi
name=$(basename "$1")
if [ -e "$dir/$name" ]; then
    rm -rf "$dir/$name.before-restore"
    mv "$dir/$name" "$dir/$name.before-restore"
fi
mv "$1" "$dir/$name"
echo "restore: $dir/$name restored; start Redis on $dir" >&2
