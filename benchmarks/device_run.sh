#!/usr/bin/env bash
# One prepared run on a lent accelerator machine, within 5 minutes wall time, compile included.
#
#   bash benchmarks/device_run.sh OUTDIR            # from the repo root, on the GPU machine
#   bash benchmarks/device_run.sh --check [OUTDIR]  # every step at tiny sizes on a CPU (~2 minutes)
#
# Step 0 installs .whl/*.whl (benchmarks/build_device_wheels.sh) into $DEVICE_SITE (/tmp/site) and
# checks the imports (fails fast); steps 1-3 are `python -m benchmarks.device_steps --step ...`
# (env throughput, one GoalAnt `paper` EPG generation, one MetaGenRL `paper` meta-iteration); step 4
# runs `python -m benchmarks.peers $PEERS_ARGS` (reduced --full: PPO only) if that file and rejax are
# there and time is left. Each step has its own time limit (`timeout`) within TOTAL_LIMIT; what is
# skipped is said why.
# OUTDIR gets setup.json, throughput.json, epg_generation.json, metagenrl_iteration.json, peers.log,
# summary.md (a RESULTS.md-ready section naming the device) and device_run.log (everything printed).
# Exit 0 when steps 0-3 completed; 1 otherwise; 2 on bad arguments.
# Step 0 also stops when jax sees no accelerator (except with --check or DEVICE_RUN_ALLOW_CPU=1).
# Environment: PYTHON (python3), DEVICE_SITE, PEERS_ARGS (--full --only ppo), and time limits in
# seconds (0 skips a step): TOTAL_LIMIT (285), LIMIT_THROUGHPUT (50), LIMIT_EPG (150), LIMIT_METAGENRL
# (70), LIMIT_PEERS (120); e.g. step 2 alone: LIMIT_THROUGHPUT=0 LIMIT_METAGENRL=0 LIMIT_EPG=280 ...
set -uo pipefail
usage() { echo "usage: bash benchmarks/device_run.sh [--check] OUTDIR  (OUTDIR optional with --check)" >&2; exit 2; }
CHECK=0
[ "${1:-}" = "--check" ] && { CHECK=1; shift; }
[ $# -le 1 ] || usage
OUT=${1:-}
case "$OUT" in -*) usage ;; "") [ $CHECK = 1 ] || usage; OUT=$(mktemp -d /tmp/device_run_check.XXXXXX) ;; esac
[ -e "$OUT" ] && [ ! -d "$OUT" ] && { echo "error: OUTDIR '$OUT' is a file" >&2; exit 2; }
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || { echo "error: cannot create OUTDIR '$OUT'" >&2; exit 2; }
cd "$(dirname "$0")/.."
exec > >(tee -a "$OUT/device_run.log") 2>&1

PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if [ $CHECK = 1 ]; then
  MODE=--check; TOTAL=${TOTAL_LIMIT:-420}
  L_THR=${LIMIT_THROUGHPUT:-150}; L_EPG=${LIMIT_EPG:-150}; L_MG=${LIMIT_METAGENRL:-150}; L_PEERS=${LIMIT_PEERS:-60}
  export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
  # tiny programs: a cheaper XLA compile (and a persistent cache for reruns) is all that matters here
  export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_backend_optimization_level=0"
  export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-${TMPDIR:-/tmp}/metarl-device-run-check-xla}
else
  MODE=; TOTAL=${TOTAL_LIMIT:-285}
  L_THR=${LIMIT_THROUGHPUT:-50}; L_EPG=${LIMIT_EPG:-150}; L_MG=${LIMIT_METAGENRL:-70}; L_PEERS=${LIMIT_PEERS:-120}
fi
MIN_STEP=20  # a step given fewer seconds than this is skipped
PEERS_ARGS_SET=${PEERS_ARGS:+1}; PEERS_ARGS=${PEERS_ARGS:---full --only ppo}
declare -A STATUS
echo "== device_run $(date '+%Y-%m-%d %H:%M:%S') mode=${MODE:-full} out=$OUT python=$PY limits: total $TOTAL s," \
     "throughput $L_THR, epg_generation $L_EPG, metagenrl_iteration $L_MG, peers $L_PEERS"

# ---- step 0: wheels, imports, devices ----------------------------------------------------------------
shopt -s nullglob
wheels=(.whl/*.whl)
pyver=$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || { echo "error: no python '$PY'"; exit 1; }
if [ ${#wheels[@]} -eq 0 ]; then
  echo "step 0: no wheels in .whl/: using $PY's own packages"
elif [ "$pyver" != 3.12 ]; then
  echo "step 0: skipped installing .whl/ (Python 3.12 wheels, $PY is $pyver): using its own packages"
else
  SITE=${DEVICE_SITE:-/tmp/site}
  if [ $CHECK = 1 ] && [ -z "${DEVICE_SITE:-}" ]; then
    SITE=$(mktemp -d /tmp/device_run_site.XXXXXX) && trap 'rm -rf "$SITE"' EXIT
  fi
  echo "step 0: installing ${#wheels[@]} wheels into $SITE"
  PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}" \
    || { echo "STEP 0 FAILED: pip install of .whl/ into $SITE"; exit 1; }
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="${PYTHONPATH:-$PWD}"
$PY -m benchmarks.device_steps --step setup --out "$OUT" $MODE \
  || { echo "STEP 0 FAILED (see the line above); nothing measured"; exit 1; }
STATUS[setup]=ok

# ---- steps 1-3 -------------------------------------------------------------------------------------
run_step() {  # name limit: runs device_steps --step name under min(limit, time left)
  local name=$1 want=$2 left=$((TOTAL - SECONDS)) lim rc t0=$SECONDS
  lim=$(( want < left ? want : left ))
  if [ "$want" -eq 0 ]; then
    STATUS[$name]="skipped: its limit is set to 0"; echo "== $name ${STATUS[$name]}"; return
  elif [ $lim -lt $MIN_STEP ]; then
    STATUS[$name]="skipped: only $left s of the $TOTAL s total left"; echo "== $name ${STATUS[$name]}"; return
  fi
  echo "== $name (limit $lim s)"
  timeout -k 10 $lim $PY -m benchmarks.device_steps --step "$name" --out "$OUT" $MODE --budget $((lim * 3 / 4))
  rc=$?
  case $rc in
    0) STATUS[$name]="ok ($((SECONDS - t0)) s)" ;;
    124|137) STATUS[$name]="TIMED OUT after $lim s (partial results in $name.json)" ;;
    *) STATUS[$name]="FAILED (exit $rc)" ;;
  esac
  echo "== $name: ${STATUS[$name]}"
}
run_step throughput "$L_THR"
run_step epg_generation "$L_EPG"
run_step metagenrl_iteration "$L_MG"

# ---- step 4: peers, if time is left ------------------------------------------------------------------
left=$((TOTAL - SECONDS)); lim=$(( L_PEERS < left ? L_PEERS : left ))
if [ $CHECK = 1 ] && [ -z "$PEERS_ARGS_SET" ]; then
  STATUS[peers]="skipped: check mode (peers.py has no tiny size; set PEERS_ARGS to run it)"
elif [ "$L_PEERS" -eq 0 ]; then
  STATUS[peers]="skipped: its limit is set to 0"
elif [ ! -f benchmarks/peers.py ]; then
  STATUS[peers]="skipped: benchmarks/peers.py does not exist"
elif ! $PY -c 'import rejax, gymnax' 2>/dev/null; then
  STATUS[peers]="skipped: rejax/gymnax not importable (build .whl/ without --core-only)"
elif [ $lim -lt $MIN_STEP ]; then
  STATUS[peers]="skipped: only $left s of the $TOTAL s total left"
else
  echo "== peers (limit $lim s): python -m benchmarks.peers $PEERS_ARGS"
  t0=$SECONDS
  timeout -k 10 $lim $PY -m benchmarks.peers $PEERS_ARGS > "$OUT/peers.log" 2>&1
  rc=$?; tail -n 20 "$OUT/peers.log"
  case $rc in
    0) STATUS[peers]="ok ($((SECONDS - t0)) s)" ;;
    124|137) STATUS[peers]="TIMED OUT after $lim s (see peers.log)" ;;
    *) STATUS[peers]="FAILED (exit $rc, see peers.log)" ;;
  esac
fi
[ "${STATUS[peers]}" = "${STATUS[peers]#ok}" ] && echo "== peers ${STATUS[peers]}"

# ---- summary ---------------------------------------------------------------------------------------
$PY -m benchmarks.device_steps --step summary --out "$OUT" $MODE || echo "summary FAILED"
{
  echo; echo "Steps of this run (total wall $SECONDS s):"
  for s in setup throughput epg_generation metagenrl_iteration peers; do echo "- $s: ${STATUS[$s]}"; done
} | tee -a "$OUT/summary.md"
for s in throughput epg_generation metagenrl_iteration; do
  [ "${STATUS[$s]}" != "${STATUS[$s]#ok}" ] || exit 1
done
exit 0
