#!/usr/bin/env bash
# Brings the local cluster up: Redis (feature store), the dev Kafka broker, ompi-server.
# Idempotent: pieces already running are left alone. Stop everything with cluster/down.sh.
#   cluster/up.sh
# Environment: STREAMREC_RUN_DIR (default ./runs/local), STREAMREC_REDIS_PORT (6379),
# STREAMREC_BROKER_ARGS, STREAMREC_MPI_IF, STREAMREC_BIN — see the per-service scripts.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ok=1
bash "$HERE/redis.sh" start || ok=0
[ "$ok" = 1 ] && { bash "$HERE/broker.sh" start || ok=0; }
[ "$ok" = 1 ] && { bash "$HERE/ompi-server.sh" start || ok=0; }
if [ "$ok" = 0 ]; then
    echo "cluster: start failed; stopping what was started" >&2
    bash "$HERE/down.sh" >&2 || true
    exit 1
fi
bash "$HERE/status.sh"
