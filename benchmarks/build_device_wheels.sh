#!/usr/bin/env bash
# Builds .whl/ (git-ignored, at the repo root): the Python 3.12 manylinux x86-64 wheels that the lent
# accelerator machine lacks, for benchmarks/device_run.sh to install there without network.
#
#   bash benchmarks/build_device_wheels.sh [--core-only]
#
# That machine has jax 0.11.2 (CUDA 13), flax, optax, chex, orbax-checkpoint, numpy, scipy, etils,
# msgpack, matplotlib, pandas, seaborn, cloudpickle, six, wrapt, attrs (see the device tool's package
# list), but not brax, evosax, mujoco, mujoco-mjx, tensorboardX nor what of theirs we import: mujoco
# 4.0.0's binary part mujoco-core, trimesh (mujoco.mjx) and jaxopt (brax.generalized). Checked by
# importing and running the --check steps against only the machine's packages plus these wheels;
# brax's other requirements (flask, ml-collections, ...) and mujoco's viewer (mujoco-studio, glfw,
# pyopengl) are never imported by us. The peers of step 4 (rejax and its gymnax pin, distrax, tfp,
# gymnasium, ...) come too unless --core-only. Versions: those tested on Python 3.12 (pyproject.toml).
# Exits non-zero if a download fails or the wheels plus the working tree that travels (tracked and
# untracked non-ignored files) exceed 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."

CORE=(brax==0.14.2 evosax==0.3.2 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-mjx==3.17.0
      tensorboardX==2.6.5 trimesh==5.2.0 jaxopt==0.8.5)
PEERS=(rejax==0.1.3 gymnax==0.0.9 distrax==0.1.9 tfp-nightly==0.26.0.dev20261027 gymnasium==1.4.0
       farama-notifications==0.0.6 dm-tree==0.1.10 decorator==5.3.1 gast==0.7.0 glfw==2.11.0)
LIMIT=$((64 * 1024 * 1024))

case "${1:-}" in
  "") WANT=("${CORE[@]}" "${PEERS[@]}") ;;
  --core-only) WANT=("${CORE[@]}") ;;
  *) echo "usage: bash benchmarks/build_device_wheels.sh [--core-only]" >&2; exit 2 ;;
esac

grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '.whl/' .gitignore 2>/dev/null || echo '.whl/' >> .gitignore

rm -rf .whl && mkdir .whl
for spec in "${WANT[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$spec" 2>&1 | grep -v 'is ignored: it is neither' || true
  name=${spec%%==*}
  ls .whl | grep -qi "^${name//-/[-_]}-" || { echo "error: no wheel downloaded for $spec" >&2; exit 1; }
done

wheels=$(du -cb .whl/*.whl | tail -1 | cut -f1)
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | sort -zu |
        xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}')
total=$((wheels + tree))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
ls -l .whl | awk 'NR > 1 {printf "  %9d  %s\n", $5, $9}'
echo "wheels: $(ls .whl | wc -l) files, $(mib "$wheels"); working tree: $(mib "$tree"); total: $(mib "$total") (limit 64 MiB)"
if [ "$total" -gt "$LIMIT" ]; then
  echo "error: wheels plus working tree exceed 64 MiB; try --core-only" >&2
  exit 1
fi
