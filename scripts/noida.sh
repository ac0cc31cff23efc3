#!/usr/bin/env bash
# Installs noida-db — the second Kafka-protocol broker the produce/featurize integration tests run
# against (docs/ARCHITECTURE.md, "Brokers tested") — into a Python virtual environment, only if it
# is not there yet, and prints the path of its binary on stdout. scripts/test.sh exports that path
# as STREAMREC_NOIDA_BIN.
#   bash scripts/noida.sh        # → …/.build/venv-noida/lib/python3.*/site-packages/noida_db/noida-db
# The venv is $STREAMREC_NOIDA_VENV, by default .build/venv-noida (never committed: .build/ is
# ignored). The path printed is the Rust binary itself, not pip's `bin/noida-db` Python wrapper:
# the wrapper runs the binary as a child and does not pass SIGTERM on, so stopping the wrapper
# would leave the broker running.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.2.3   # pinned: the tests and docs/ARCHITECTURE.md describe this version's behaviour
VENV="${STREAMREC_NOIDA_VENV:-$PWD/.build/venv-noida}"

binary_path() {
    "$VENV/bin/python" -c 'import os, noida_db; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))' 2>/dev/null
}

# The installed binary, if it is the pinned version (its loader warns on stderr about a weak glibc
# symbol on Debian 12; harmless, see ARCHITECTURE.md).
installed() {
    local bin
    bin="$(binary_path)" || return 1
    [ -f "$bin" ] || return 1
    chmod +x "$bin"   # pip's wrapper does this on first use; we run the binary directly
    [ "$("$bin" version 2>/dev/null)" = "noida-db $VERSION" ] || return 1
    echo "$bin"
}

if bin="$(installed)"; then
    echo "noida: noida-db $VERSION already installed in $VENV" >&2
    echo "$bin"
    exit 0
fi

# `python3 -m venv` needs Debian's python3-venv (pip's bundled wheels; `import ensurepip` alone
# succeeds without it), which scripts/setup.sh installs too.
if command -v dpkg >/dev/null && ! dpkg -s python3-venv >/dev/null 2>&1; then
    echo "noida: installing python3-venv" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "noida: need root (or sudo) to install python3-venv" >&2; exit 1; }
        SUDO="sudo"
    fi
    $SUDO apt-get update >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends python3-venv >&2
fi

echo "noida: installing noida-db==$VERSION into $VENV" >&2
if [ -e "$VENV" ]; then   # a half-made or other-version venv: start over (only if it is a venv)
    [ -f "$VENV/pyvenv.cfg" ] || { echo "noida: $VENV exists and is not a virtual environment; remove it or set STREAMREC_NOIDA_VENV" >&2; exit 1; }
    rm -rf "$VENV"
fi
python3 -m venv "$VENV" >&2
"$VENV/bin/pip" install --disable-pip-version-check --quiet "noida-db==$VERSION" >&2
bin="$(installed)" || { echo "noida: noida-db $VERSION installed, but its binary does not run (\`$(binary_path) version\`)" >&2; exit 1; }
echo "$bin"
