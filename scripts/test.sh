#!/usr/bin/env bash
# Runs the whole test suite on the RELEASE build — the code users run: the numeric kernels build
# with -Ounchecked there (see docs/ARCHITECTURE.md, "Build flags"), so their reference checks must
# run against that build. Installs/builds via setup.sh, then `swift test -c release`, one test at
# a time (the integration tests start MPI jobs, Redis and brokers; on 2 cores, running them side
# by side only starves each other). Extra arguments go to `swift test`
# (e.g. `--filter NativeTests`). Exits with swift test's status.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh release

# Open MPI inside containers/CI: allow root, stay on loopback, shared-memory + TCP transports.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_btl_tcp_if_include=lo
export OMPI_MCA_btl=self,vader,tcp
# The multi-host test (network namespaces) must run on this machine kind, never skip silently.
export STREAMREC_REQUIRE_NETNS="${STREAMREC_REQUIRE_NETNS:-1}"
# The dashboard's browser test (headless Chromium, installed by setup.sh) must run, never skip.
export STREAMREC_REQUIRE_CHROMIUM="${STREAMREC_REQUIRE_CHROMIUM:-1}"
# The integration tests run this binary (under mpirun, as services).
export STREAMREC_BIN="${STREAMREC_BIN:-$(swift build -c release --show-bin-path)/streamrec}"
# noida-db, the second Kafka broker the produce/featurize tests run against (pinned, installed into
# .build/venv-noida if missing). Required here: a test that cannot start it fails, never skips.
# (Assigned before export: `export X="$(…)"` would hide the installer's failure from set -e.)
STREAMREC_NOIDA_BIN="${STREAMREC_NOIDA_BIN:-$(bash scripts/noida.sh)}"
export STREAMREC_NOIDA_BIN STREAMREC_REQUIRE_NOIDA=1
# schemathesis, which tests serve's HTTP API against its OpenAPI document (pinned, installed into
# .build/venv-schemathesis if missing). Required here as well.
STREAMREC_SCHEMATHESIS_BIN="${STREAMREC_SCHEMATHESIS_BIN:-$(bash scripts/schemathesis.sh)}"
export STREAMREC_SCHEMATHESIS_BIN STREAMREC_REQUIRE_SCHEMATHESIS=1

set +e
swift test -c release --skip-build --no-parallel "$@"
status=$?
set -e
exit $status
