#!/usr/bin/env bash
# Both ends of the dependency ranges in pyproject.toml: the oldest releases it admits on the oldest
# Python it admits, or the newest releases on a newer Python. Do they install, pass the tests, and
# decode files made with this checkout's .venv to the same image after every layer?
#
#   bash scripts/version_ends.sh oldest ../shared/data/kodak 6    # END, folder of images, how many
#   bash scripts/version_ends.sh newest ../shared/data/kodak 6
#
# oldest: uv's `--resolution lowest-direct` takes the lowest version of every direct dependency
# (torch, numpy, pillow, typer, ...) and the newest of theirs (click, ...), which is what a user
# with old packages already installed gets; Python 3.10 (PYTHON=path to change). newest: uv's default
# resolution on Python 3.13. Either way torch comes from PyPI (a CUDA build of 4-5 GB, run on the
# CPU). The venv goes to runs/END. About 20 minutes for the tests, then per image about 3 minutes
# (encode here, decode there, with and without the lossless tail), and in the oldest environment
# also 2 more (it encodes every image again on one thread and must write the same bytes). Nothing
# else should run meanwhile. Needs the .venv of the README's commands (the files are made there).
set -euo pipefail
cd "$(dirname "$0")/.."
end=${1:?oldest or newest}
images=${2:?folder of images}
limit=${3:-6}
find_python() {  # pythonX.Y on PATH, else pyenv's (uv would try to download one)
  if "python$1" --version >/dev/null 2>&1; then command -v "python$1"; return; fi
  ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/"python$1" 2>/dev/null | tail -n 1
}
case "$end" in
  oldest) python=${PYTHON:-$(find_python 3.10)}; resolution=(--resolution lowest-direct) ;;
  newest) python=${PYTHON:-$(find_python 3.13)}; resolution=() ;;
  *) echo "END is oldest or newest" >&2; exit 2 ;;
esac
[ -n "$python" ] || { echo "no Python for $end: set PYTHON" >&2; exit 2; }
venv=runs/$end
[ -x runs/uv/bin/uv ] || { python3 -m venv runs/uv && runs/uv/bin/pip install -q uv; }
if [ ! -x "$venv/bin/python" ]; then
  runs/uv/bin/uv venv -q -p "$python" "$venv"
  runs/uv/bin/uv pip install -q --python "$venv/bin/python" "${resolution[@]}" -e '.[test]'
fi
{
  "$venv/bin/python" --version
  runs/uv/bin/uv pip list --python "$venv/bin/python" 2>/dev/null \
    | grep -E '^(torch|numpy|pillow|typer|click|rich|constriction|safetensors) '
} | tee "runs/$end-versions.txt"
"$venv/bin/python" -m pytest -o addopts="" -q -p no:cacheprovider tests
for tail in "" --tail; do
  out=runs/portability-$end${tail}
  .venv/bin/python scripts/portability.py "$images" --out "$out" --limit "$limit" $tail --variant plain \
    --python "$venv/bin/python"
  if [ "$end" = oldest ]; then
    OMP_NUM_THREADS=1 "$venv/bin/python" scripts/portability.py "$images" --out "$out" --decode-only \
      --reencode --variant threads1
  fi
done
