#!/usr/bin/env bash
# CI: every dependency profile's lock installs on its own target.  For each
# requirements/locks/NAME.txt, uv resolves the lock for the Python version and wheel platform its
# header names (not this machine's) from PyPI alone, wheels only (but the sdists the header allows),
# with the packages the platform provides as constraints; the resolution must be the lock itself,
# pin for pin: a pin with no wheel for that Python or platform, a missing or stale dependency, fails
# here, not on a Jetson.  Then the control: today's pins (requirements-ml.txt) must FAIL on the
# JetPack 6 target (Python 3.10) -- proof that the check can fail, and the reason the profiles exist.
# PyPI metadata only (no wheel is downloaded; uv's cache in ./.cache/uv); ~20 s.
# (pip cannot do this here: pip 23.2's --dry-run --target downloads whole wheels, torch's
# included, for metadata (5 min), and checks Requires-Python against this interpreter.)
#
#   bash scripts/check_profiles.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ci_tools.sh
uv="$PWD/.tools/bin/uv"
export UV_CACHE_DIR="${UV_CACHE_DIR:-$PWD/.cache/uv}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

header() { sed -n "s/^# $2: *//p" "$1" | head -n 1; }
pins() { grep -E '^[A-Za-z0-9]' "$1" | sed 's/ .*//' | tr 'A-Z_' 'a-z-' | sort; }

# resolve FILE PYTHON PLATFORM PROVIDES SDISTS OUT: uv's resolution of FILE for that target
resolve() {
  local file="$1" python="$2" platform="$3" provides="$4" sdists="$5" out="$6" extra=()
  [[ "$platform" =~ ^manylinux_([0-9]+_[0-9]+)_(x86_64|aarch64)$ ]] || { echo "bad platform '$platform'"; return 2; }
  : > "$out.provides"
  for pin in $provides; do echo "$pin" >> "$out.provides"; extra+=(--no-emit-package "${pin%%==*}"); done
  for sdist in $sdists; do extra+=(--no-binary "$sdist"); done
  "$uv" pip compile "$file" --quiet --no-header --no-annotate --no-python-downloads \
    --python-version "$python" --python-platform "${BASH_REMATCH[2]}-manylinux_${BASH_REMATCH[1]}" \
    --only-binary :all: --index-url https://pypi.org/simple --constraint "$out.provides" "${extra[@]}" \
    --output-file "$out"
}

declare -A pids
for lock in requirements/locks/*.txt; do
  name="$(basename "$lock" .txt)"
  resolve "$lock" "$(header "$lock" python)" "$(header "$lock" platform)" "$(header "$lock" provides)" \
    "$(header "$lock" sdists)" "$logs/$name.out" > "$logs/$name.log" 2>&1 &
  pids[$name]=$!
done
control="requirements/locks/jetpack6-py310-aarch64.txt"
resolve requirements-ml.txt "$(header "$control" python)" "$(header "$control" platform)" \
  "$(header "$control" provides)" "" "$logs/control.out" > "$logs/control.log" 2>&1 &
control_pid=$!

failed=0
for name in $(printf '%s\n' "${!pids[@]}" | sort); do
  lock="requirements/locks/$name.txt"
  if ! wait "${pids[$name]}"; then
    echo "check_profiles.sh: $name does NOT resolve for its target:" >&2
    grep -v '^ *$' "$logs/$name.log" | head -n 8 >&2
    failed=1
  elif ! diff <(pins "$lock") <(pins "$logs/$name.out") > "$logs/$name.diff"; then
    echo "check_profiles.sh: $name resolves to other pins than its lock (< lock, > resolution;" \
         "rerun bash scripts/lock_profiles.sh $name):" >&2
    grep '^[<>]' "$logs/$name.diff" | head -n 8 >&2
    failed=1
  else
    echo "check_profiles.sh: $name resolves to its lock (Python $(header "$lock" python)," \
         "$(header "$lock" platform), $(pins "$lock" | wc -l) pins)"
  fi
done
if wait "$control_pid"; then
  echo "check_profiles.sh: control failed: today's pins (requirements-ml.txt) resolve for $(basename "$control" .txt) -- the check cannot fail?" >&2
  failed=1
else
  echo "check_profiles.sh: control: today's pins (requirements-ml.txt) do not resolve for" \
       "$(basename "$control" .txt), as expected: $(grep -m 1 "Because" "$logs/control.log" | sed "s/^ *//; s/^cause: //")"
fi
exit "$failed"
