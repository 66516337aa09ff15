#!/usr/bin/env bash
# Make the exact lock file of each dependency profile: requirements/profiles/NAME.in ->
# requirements/locks/NAME.txt, resolved by uv for the profile's Python version and platform (not
# this machine's), from PyPI only.  A profile's header names them:
#   # python: 3.10
#   # platform: manylinux_2_35_aarch64        (a wheel platform tag: the target's glibc and arch)
#   # provides: torch==2.5.0 numpy==1.26.4    (the platform's own packages: resolved against,
#                                              never written into the lock)
#   # sdists: empy                            (the only packages allowed without a wheel)
# The lock starts with the profile's header, so CI (scripts/check_profiles.sh) and
# install_workspace.sh read the same target from it.  Profiles are made in the order below: a
# later one may constrain itself with an earlier one's lock.
#
#   bash scripts/lock_profiles.sh            # every profile (~1 min, PyPI metadata only)
#   bash scripts/lock_profiles.sh NAME...    # only these
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORDER=(x86_64-py311 jetpack6-py310-aarch64 jazzy-py312-aarch64 jetpack6-libs-x86_64-py311)
bash scripts/ci_tools.sh
uv="$PWD/.tools/bin/uv"
export UV_CACHE_DIR="${UV_CACHE_DIR:-$PWD/.cache/uv}"

header() { sed -n "s/^# $2: *//p" "$1" | head -n 1; }

lock_one() {
  local name="$1" in="requirements/profiles/$1.in" out="requirements/locks/$1.txt"
  [[ -f "$in" ]] || { echo "lock_profiles.sh: no profile $in" >&2; exit 2; }
  local python platform provides sdists arch glibc
  python="$(header "$in" python)"
  platform="$(header "$in" platform)"
  provides="$(header "$in" provides)"
  sdists="$(header "$in" sdists)"
  [[ "$platform" =~ ^manylinux_([0-9]+)_([0-9]+)_(x86_64|aarch64)$ ]] || {
    echo "lock_profiles.sh: $in: platform '$platform' is not manylinux_<major>_<minor>_<arch>" >&2; exit 2; }
  glibc="${BASH_REMATCH[1]}_${BASH_REMATCH[2]}"; arch="${BASH_REMATCH[3]}"
  local extra=() tmp
  tmp="$(mktemp)"
  for pin in $provides; do
    echo "$pin" >> "$tmp"
    extra+=(--no-emit-package "${pin%%==*}")
  done
  [[ -s "$tmp" ]] && extra+=(--constraint "$tmp")
  for sdist in $sdists; do extra+=(--no-binary "$sdist"); done
  echo "lock_profiles.sh: $name (Python $python, $platform${provides:+, platform provides $provides})"
  (cd requirements/profiles && "$uv" pip compile "$name.in" --quiet --no-header --no-python-downloads \
     --python-version "$python" --python-platform "$arch-manylinux_$glibc" --only-binary :all: \
     --index-url https://pypi.org/simple "${extra[@]}" --output-file "$tmp.lock") \
    || { rm -f "$tmp" "$tmp.lock"; exit 1; }
  {
    grep '^#' "$in"
    echo "# made by: bash scripts/lock_profiles.sh $name (uv $("$uv" --version | cut -d' ' -f2)); do not edit"
    cat "$tmp.lock"
  } > "$out"
  rm -f "$tmp" "$tmp.lock"
}

names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=("${ORDER[@]}")
for name in "${names[@]}"; do lock_one "$name"; done
