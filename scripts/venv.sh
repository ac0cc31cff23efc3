# Sourced by scripts/noida.sh and scripts/schemathesis.sh: a Python virtual environment holding one
# pinned PyPI package, made (or made again) when missing.
#   make_venv TAG VENV "package==version"
# `python3 -m venv` needs Debian's python3-venv (pip's bundled wheels; `import ensurepip` alone
# succeeds without it), installed here when missing. Messages go to stderr, tagged TAG.
make_venv() {
    local tag="$1" venv="$2" requirement="$3"
    if command -v dpkg >/dev/null && ! dpkg -s python3-venv >/dev/null 2>&1; then
        echo "$tag: installing python3-venv" >&2
        local sudo=""
        if [ "$(id -u)" -ne 0 ]; then
            command -v sudo >/dev/null || { echo "$tag: need root (or sudo) to install python3-venv" >&2; return 1; }
            sudo="sudo"
        fi
        $sudo apt-get update >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends python3-venv >&2
    fi
    echo "$tag: installing $requirement into $venv" >&2
    if [ -e "$venv" ]; then   # a half-made or other-version venv: start over (only if it is a venv)
        [ -f "$venv/pyvenv.cfg" ] || { echo "$tag: $venv exists and is not a virtual environment; remove it or choose another path" >&2; return 1; }
        rm -rf "$venv"
    fi
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --disable-pip-version-check --quiet "$requirement" >&2
}
