#!/usr/bin/env bash
# Runs the whole test suite: installs/builds via setup.sh (debug), then `swift test`.
# Extra arguments go to `swift test` (e.g. `--filter NativeTests`). Exits with swift test's status.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

# Open MPI inside containers/CI: allow root, stay on loopback, shared-memory + TCP transports.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_btl_tcp_if_include=lo
export OMPI_MCA_btl=self,vader,tcp
# The MPI smoke test runs this binary under mpirun.
export STREAMREC_BIN="${STREAMREC_BIN:-$(swift build --show-bin-path)/streamrec}"

set +e
swift test "$@"
status=$?
set -e
exit $status
