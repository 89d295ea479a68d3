#!/usr/bin/env bash
# Set-up and use in one command each: the first call makes .venv (CPU torch 2.13.0 first, so nothing
# pulls a CUDA build, then this project with its test, serve and ray extras); later calls reuse it.
#   ./run.sh rmbg ARGS...        the command line (e.g. rmbg remove photos/ -o out/), run from where you
#                                are, so relative paths mean what they say
#   ./run.sh tests [PYTEST ARGS] the test suite; run in a loopback-only network namespace where that is
#                                allowed (root, as in CI), which the Ray cluster tests need (else they skip)
# RMBG_TORCH: the torch to install at set-up, as pip arguments (e.g. a CUDA build:
#   RMBG_TORCH="torch --index-url https://download.pytorch.org/whl/cu124"). RMBG_VENV: the venv to use.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")"
venv=${RMBG_VENV:-.venv}
[[ $venv == /* ]] || venv="$PWD/$venv"
read -r -a torch_args <<< "${RMBG_TORCH:-torch==2.13.0}"
stamp="$venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "run.sh: setting up $venv (one time)..." >&2
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "${torch_args[@]}"
  "$venv/bin/python" -m pip install -q -e ".[test,serve,ray]"
  touch "$stamp"
fi
command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  rmbg) cd "$caller" && exec "$venv/bin/rmbg" "$@" ;;
  tests)
    # Ray binds the machine's non-loopback address unless only loopback exists: give it a namespace of its own.
    if command -v ip >/dev/null && unshare -n ip link set lo up 2>/dev/null; then
      exec unshare -n sh -c 'ip link set lo up && exec "$0" -m pytest "$@"' "$venv/bin/python" "$@"
    fi
    exec "$venv/bin/python" -m pytest "$@" ;;
  *) echo "usage: ./run.sh rmbg ARGS... | ./run.sh tests [PYTEST ARGS]" >&2; exit 2 ;;
esac
