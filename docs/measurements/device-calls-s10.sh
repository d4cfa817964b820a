#!/bin/bash
# session 10, call 1 (nvidia-h200-x2): two full stage-suite --egbench-ref HEAD runs of unchanged code at once,
# one per GPU, each process tree on its own half of the CPUs (issue 11: 3 such runs with 0 failures).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
want=$(cat .devscripts/want)
if [ "$(git rev-parse HEAD)" != $want ]; then git fetch -q .devscripts/main.bundle main:refs/heads/egb-local && [ "$(git rev-parse egb-local)" = $want ] && git reset -q egb-local || { echo "device HEAD $(git rev-parse HEAD) is not $want"; exit 3; }; fi
git log --oneline -1 > $OUT/steps.txt; git status --short --untracked-files=no >> $OUT/steps.txt
[ -z "$(git status --short --untracked-files=no)" ] || { echo "working tree differs from HEAD"; cat $OUT/steps.txt; exit 3; }
nvidia-smi --query-gpu=index,name,driver_version,clocks.max.sm --format=csv >> $OUT/steps.txt; lscpu | grep -i "model name" >> $OUT/steps.txt; nproc >> $OUT/steps.txt
read H0 H1 < <(python3 -c "import os; c=sorted(os.sched_getaffinity(0)); h=len(c)//2; print(','.join(map(str,c[:h])), ','.join(map(str,c[h:])))")
END=$(( $(date +%s) + ${LIM:-580} ))
P="python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider --egbench --egbench-device cuda -W ignore::DeprecationWarning"
refhead() {  # GPU, CPUs, run number
  export CUDA_VISIBLE_DEVICES=$1 TMPDIR=/tmp/t$1; mkdir -p $TMPDIR; local T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $2 $P benchmarks -k "not acceptance and not parallel" --egbench-ref HEAD \
    --egbench-ref-pairs 1 --durations=8 --egbench-json=$OUT/ref-head-$3.json > $OUT/ref-head-$3.log 2>&1
  echo "ref HEAD run $3 (GPU $1, CPUs $2) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt
}
refhead 0 $H0 ${R0:-1} & sleep 4; refhead 1 $H1 ${R1:-2} & wait
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|pair 1/1\|confirming\|regress\|not compared" $f | cut -c1-240 | tail -10; done
