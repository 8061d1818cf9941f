#!/usr/bin/env bash
# caprl's GPU benchmark in one call: installs the carried wheels (benchmarks/gpu/wheels, from `make gpu-wheels`)
# into a temporary folder put first on PYTHONPATH, then runs benchmarks/gpu/bench.py from this working tree.
#
#   bash benchmarks/gpu/run.sh                  # real sizes, on the GPU; writes $OUT/gpu_bench.{json,md}
#   bash benchmarks/gpu/run.sh --tiny --no-wheels --out DIR   # the CPU test's run (tests/test_gpu_bench.py)
#
# --no-wheels (or CAPRL_GPU_NO_WHEELS=1): use the interpreter's own packages, as on a development machine. Without
# wheels in benchmarks/gpu/wheels nothing is installed either. PYTHON picks the interpreter (default: python3).
# The whole run is bounded by CAPRL_GPU_BENCH_TIMEOUT seconds (default 465: one device call of 8 minutes with the
# install); the benchmark writes its files after every section, so a run cut short keeps what it measured.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
py=${PYTHON:-python3}
install=1
args=()
for a in "$@"; do
  if [ "$a" = "--no-wheels" ]; then install=0; else args+=("$a"); fi
done
[ -n "${CAPRL_GPU_NO_WHEELS:-}" ] && install=0

site=""
if [ "$install" = 1 ] && compgen -G "$here/wheels/*.whl" >/dev/null; then
  site=$(mktemp -d "${TMPDIR:-/tmp}/caprl-gpu-site.XXXXXX")
  start=$(date +%s)
  "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --target "$site" "$here"/wheels/*.whl || { echo "installing the carried wheels failed" >&2; exit 3; }
  echo "installed $(ls "$here"/wheels/*.whl | wc -l) wheels into $site in $(( $(date +%s) - start )) s"
fi
export PYTHONPATH="${site:+$site:}$repo${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
cd "$repo" || exit 3
timeout -k 15 "${CAPRL_GPU_BENCH_TIMEOUT:-465}" "$py" -m benchmarks.gpu.bench "${args[@]}"
rc=$?
[ -n "$site" ] && rm -rf "$site"
exit $rc
