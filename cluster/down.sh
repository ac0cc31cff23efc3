#!/usr/bin/env bash
# Stops the local cluster (ompi-server, broker, Redis), in reverse order. Safe to call twice.
# Each service gets SIGTERM (Redis: SHUTDOWN, which writes its AOF), then SIGKILL after 10 s.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
rc=0
bash "$HERE/ompi-server.sh" stop || rc=1
bash "$HERE/broker.sh" stop || rc=1
bash "$HERE/redis.sh" stop || rc=1
exit $rc
