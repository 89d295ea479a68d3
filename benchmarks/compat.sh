#!/usr/bin/env bash
# Does rmbg-kit work on the oldest torch pyproject.toml allows and on the newest, with transformers 4.46
# and the newest 5.x? Builds a throwaway venv per row (never in the repository), runs
# benchmarks/compat_check.py in it (rmbg_core with and without the accelerator, and a folder `rmbg export`
# wrote, through transformers' remote code), and prints a markdown table.
#
#   benchmarks/compat.sh [FIXTURE_DIR]      # default: ../shared/fixtures/isnet-real
#
# Environment: COMPAT_DIR (where the venvs go; default a new temporary folder), KEEP_VENVS=1 (keep each
# venv; by default it is deleted after its row: a CUDA build of torch takes several GB), PYTHON (default
# python3), OLD_TORCH (default: the lower bound in pyproject.toml), OLD_TRANSFORMERS (default 4.46.*),
# NEW_TORCH / NEW_TRANSFORMERS (default: the newest releases; transformers below 6). pip runs isolated from
# this machine's pip configuration, so it sees every release on PyPI.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
FIXTURE="${1:-$REPO/../shared/fixtures/isnet-real}"
PYTHON="${PYTHON:-python3}"
WORK="${COMPAT_DIR:-$(mktemp -d -t rmbg-compat.XXXXXX)}"
LOWER="$(sed -n 's/^ *"torch>=\([0-9.]*\)".*/\1/p' "$REPO/pyproject.toml")"
OLD_TORCH="${OLD_TORCH:-$LOWER}"
OLD_TRANSFORMERS="${OLD_TRANSFORMERS:-4.46.*}"
NEW_TORCH_REQ="torch${NEW_TORCH:+==$NEW_TORCH}"
NEW_TRANSFORMERS_REQ="transformers${NEW_TRANSFORMERS:+==$NEW_TRANSFORMERS}"
[ -n "${NEW_TRANSFORMERS:-}" ] || NEW_TRANSFORMERS_REQ="transformers<6"
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
case "$WORK" in "$REPO"|"$REPO"/*) echo "compat.sh: COMPAT_DIR must be outside the repository" >&2; exit 2;; esac
[ -f "$FIXTURE/model.safetensors" ] || { echo "compat.sh: no fixture at $FIXTURE" >&2; exit 2; }
mkdir -p "$WORK"

# name | torch requirement | transformers requirement | extra requirements
ROWS=(
  "oldest|torch==$OLD_TORCH|transformers==$OLD_TRANSFORMERS|numpy<2"
  "newest|$NEW_TORCH_REQ|$NEW_TRANSFORMERS_REQ|numpy"
)
RESULTS=()
STATUS=0
for row in "${ROWS[@]}"; do
  IFS='|' read -r name torch_req transformers_req extra <<<"$row"
  venv="$WORK/venv-$name"
  echo "== $name: $torch_req $transformers_req $extra (venv: $venv)" >&2
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q "$torch_req" "$transformers_req" "$extra" "huggingface_hub>=0.23" "pillow>=10" \
    "safetensors>=0.4" "tqdm>=4.60" >&2
  mkdir -p "$WORK/$name"
  if line="$("$venv/bin/python" "$REPO/benchmarks/compat_check.py" "$FIXTURE" "$WORK/$name" 2>"$WORK/$name.log" | tail -1)"; then :; else STATUS=1; fi
  [ -n "$line" ] || line="{\"ok\": false, \"crash\": \"see $WORK/$name.log\"}"
  RESULTS+=("$line")
  [ "${KEEP_VENVS:-0}" = 1 ] || rm -rf "$venv"
done

"$PYTHON" - "${RESULTS[@]}" <<'PY'
import json, sys
print("| torch | transformers | numpy | Python | accelerator (core / hub) | rmbg_core max diff (accelerated / plain) | exported pipeline max diff | result |")
print("|---|---|---|---|---|---|---|---|")
for raw in sys.argv[1:]:
    row = json.loads(raw)
    if "torch" not in row:
        print(f"| ? | ? | ? | ? | ? | ? | ? | failed ({row.get('crash')}) |")
        continue
    on = lambda flag: {True: "on", False: "off (self-check)", None: "?"}[flag]
    problems = row["hub_failures"] + row["self_check_warnings"]
    print(f"| {row['torch']} | {row['transformers']} | {row['numpy']} | {row['python']} "
          f"| {on(row['core_accelerated'])} / {on(row['hub_accelerated'])} "
          f"| {row['core_max_diff']} / {row['plain_max_diff']} | {row['hub_max_diff']} "
          f"| {'ok' if row['ok'] else 'FAILED: ' + '; '.join(problems)[:300]} |")
PY
echo "venvs and logs under $WORK" >&2
exit "$STATUS"
