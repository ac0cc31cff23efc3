#!/usr/bin/env bash
# Installs schemathesis — which tests `serve` against its own OpenAPI document (GET /openapi.json;
# Tests/ServingTests/OpenAPIContractTests.swift) — into a Python virtual environment, only if it is
# not there yet, and prints the path of its `st` command on stdout. scripts/test.sh exports that
# path as STREAMREC_SCHEMATHESIS_BIN.
#   bash scripts/schemathesis.sh     # → …/.build/venv-schemathesis/bin/st
# The venv is $STREAMREC_SCHEMATHESIS_VENV, by default .build/venv-schemathesis (never committed).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5   # pinned: the checks the contract test names are this version's
VENV="${STREAMREC_SCHEMATHESIS_VENV:-$PWD/.build/venv-schemathesis}"

if [ -x "$VENV/bin/st" ] && [ "$("$VENV/bin/python" -c 'import schemathesis; print(schemathesis.__version__)' 2>/dev/null)" = "$VERSION" ]; then
    echo "schemathesis: $VERSION already installed in $VENV" >&2
    echo "$VENV/bin/st"
    exit 0
fi
. scripts/venv.sh
make_venv schemathesis "$VENV" "schemathesis==$VERSION"
[ -x "$VENV/bin/st" ] || { echo "schemathesis: installed, but $VENV/bin/st is missing" >&2; exit 1; }
echo "$VENV/bin/st"
