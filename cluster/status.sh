#!/usr/bin/env bash
# Which local cluster services are running, and their addresses. Exit status 0 if all are up,
# 3 if any is down.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
rc=0
for s in redis broker ompi-server; do
    bash "$HERE/$s.sh" status || rc=3
done
exit $rc
