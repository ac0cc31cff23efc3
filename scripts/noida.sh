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

. scripts/venv.sh
make_venv noida "$VENV" "noida-db==$VERSION"
bin="$(installed)" || { echo "noida: noida-db $VERSION installed, but its binary does not run (\`$(binary_path) version\`)" >&2; exit 1; }
echo "$bin"
