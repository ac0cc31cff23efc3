#!/usr/bin/env bash
# Installs StreamRec's system packages (only if missing) and builds the project.
# Idempotent: safe to run again. Extra arguments go to `swift build` (e.g. `-c release`).
#   bash scripts/setup.sh            # debug build
#   bash scripts/setup.sh release    # THE release build: what test.sh, the demos and the bench
#                                    # scripts run. One set of flags (tests included, -enable-testing)
#                                    # so that running one after another never rebuilds everything.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(libopenmpi-dev openmpi-bin librdkafka-dev libhiredis-dev redis-server libopenblas-dev
          pkg-config kcat python3-numpy wrk curl procps redis-tools
          iproute2 iputils-ping socat libssl-dev openssl python3-venv
          chromium)   # headless browser for the dashboard's test (DashboardBrowserTests)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1; then missing+=("$p"); fi
done

if ((${#missing[@]} > 0)); then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
        SUDO="sudo"
    fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "setup: system packages already installed" >&2
fi

command -v swift >/dev/null || { echo "setup: the Swift toolchain (swift) is not on PATH; install it from swift.org" >&2; exit 1; }
if [ "${1:-}" = release ]; then
    shift
    set -- -c release --build-tests -Xswiftc -enable-testing "$@"
fi
echo "setup: swift build $*" >&2
swift build "$@"
