#!/usr/bin/env bash
# Set up and run the hotline engine on a Debian machine.
#
#   ./dev.sh run      install what is missing, then start the engine on the embedded defaults
#   ./dev.sh test     install what is missing, then run the test suite
#   ./dev.sh bench    run the benchmarks under bench/
#   ./dev.sh hotline ARGS...   any other `hotline` command inside the project's environment
#
# System packages (espeak-ng, sox, ffmpeg, python3-venv, and gcc/python3-dev for the one C
# module) come from apt; Python packages go into .venv. Both steps are skipped when nothing changed.
set -euo pipefail
cd "$(dirname "$0")"

SYSTEM_PACKAGES=(espeak-ng sox ffmpeg baresip kamailio)  # baresip: a real SIP phone; kamailio: an upstream registrar (interop tests)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_system() {
    local missing=()
    for p in "${SYSTEM_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    # a C compiler and Python's headers build drivers/sip/_rtpio.c (setup.py)
    command -v gcc >/dev/null || missing+=(gcc)
    python3 -c 'import os, sysconfig; assert os.path.exists(os.path.join(
        sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null || missing+=(python3-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "dev.sh: installing ${missing[*]}" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_python() {
    [ -x .venv/bin/python ] || python3 -m venv .venv
    local stamp=.venv/.installed want
    want=$(cat pyproject.toml setup.py drivers/sip/_rtpio.c | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "dev.sh: installing Python packages into .venv" >&2
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e '.[test]'
        echo "$want" > "$stamp"
    fi
}

cmd=${1:-run}
shift || true
install_system
install_python
case "$cmd" in
    run)     exec .venv/bin/hotline run "$@" ;;
    test)    exec .venv/bin/python -m pytest "$@" ;;
    bench)   for b in bench/*_bench.py; do echo "== $b"; .venv/bin/python "$b"; done ;;
    hotline) exec .venv/bin/hotline "$@" ;;
    *) echo "usage: ./dev.sh run|test|bench|hotline ARGS" >&2; exit 2 ;;
esac
