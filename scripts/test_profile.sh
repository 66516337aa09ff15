#!/usr/bin/env bash
# Run the tests of every model family and the index on another profile's library versions: a second
# venv, ./.venv-PROFILE (ignored by git), installed exactly from requirements/locks/PROFILE.txt with
# this machine's Python, then the subset below with PYTHONPATH at the repository (no install of
# cgrs_ros itself, so the venv holds only the locked versions).  Nothing is cached outside the
# repository but pip's own cache.  For CI (.ci/run): jetpack6-libs-x86_64-py311 holds the library
# versions the JetPack 6 profile locks, as x86_64 builds.
#
#   bash scripts/test_profile.sh [PROFILE] [pytest args]    # default jetpack6-libs-x86_64-py311
#
# First run: ~4 GB of wheels (torch 2.5.0 from PyPI is a CUDA build, runs on the CPU; PyPI has no
# CPU-only torch 2.5 wheel); later runs reuse the venv when it matches the lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
profile="jetpack6-libs-x86_64-py311"
if [[ $# -gt 0 && "$1" != -* ]]; then profile="$1"; shift; fi
lock="requirements/locks/$profile.txt"
[[ -f "$lock" ]] || { echo "test_profile.sh: no lock $lock (see scripts/lock_profiles.sh)" >&2; exit 2; }
python="$(sed -n 's/^# python: *//p' "$lock" | head -n 1)"
have="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$have" == "$python" ]] || { echo "test_profile.sh: $profile is for Python $python, python3 is $have" >&2; exit 2; }
venv="$PWD/.venv-$profile"

# Every model family (open_clip retriever, image-to-text and chat-VLM captioners, the
# sentence-transformers / cross-encoder / clause-match similarities, the ONNX text runtime) and the
# index (build, load, search); none of them needs ROS.
SUBSET=(test/test_models.py test/test_embedded_models.py test/test_chat_captioner.py
        test/test_cross_encoder.py test/test_clause_match.py test/test_onnx_text.py
        test/test_index.py test/test_search.py test/test_engine.py)

[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
stamp="$venv/.cgrs_lock"
if ! cmp -s "$lock" "$stamp"; then
  echo "test_profile.sh: installing $lock into $venv"
  start=$SECONDS
  # --no-deps: the lock is complete, so pip installs exactly it and resolves nothing
  "$venv/bin/python" -m pip install -q --no-deps -r "$lock" 2>&1 | { grep -v "is ignored: it is neither" || true; }
  "$venv/bin/python" -m pip check
  cp "$lock" "$stamp"
  echo "test_profile.sh: installed in $((SECONDS - start)) s ($(du -sh "$venv" | cut -f1))"
fi
"$venv/bin/python" -c 'import torch, transformers, sentence_transformers, open_clip, onnxruntime, numpy
print("test_profile.sh: torch", torch.__version__, "transformers", transformers.__version__,
      "sentence-transformers", sentence_transformers.__version__, "open_clip", open_clip.__version__,
      "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__)'
PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q "${SUBSET[@]}" "$@"
