#!/bin/bash
# session 9, call 3: GPU 0 = the nightly's stage step (regressions against the baseline judged again by
# same-machine A/Bs, at most 8); GPU 1 = speculative decoding on the compiled runtime (first time on a GPU).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
want=$(cat .devscripts/want)
if [ "$(git rev-parse HEAD)" != $want ]; then git fetch -q .devscripts/main.bundle main:refs/heads/egb-local && [ "$(git rev-parse egb-local)" = $want ] && git reset -q egb-local || { echo "device HEAD $(git rev-parse HEAD) is not $want"; exit 3; }; fi
git log --oneline -1 > $OUT/steps.txt; git status --short | head -5 >> $OUT/steps.txt
nvidia-smi --query-gpu=index,name,driver_version,clocks.max.sm --format=csv >> $OUT/steps.txt; lscpu | grep -i "model name" >> $OUT/steps.txt; nproc >> $OUT/steps.txt
read H0 H1 < <(python3 -c "import os; c=sorted(os.sched_getaffinity(0)); h=len(c)//2; print(','.join(map(str,c[:h])), ','.join(map(str,c[h:])))")
END=$(( $(date +%s) + ${LIM:-420} ))
P="python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider --egbench --egbench-device cuda -W ignore::DeprecationWarning"
gpu0() {
  export CUDA_VISIBLE_DEVICES=0 TMPDIR=/tmp/t0; mkdir -p $TMPDIR; local T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H0 $P benchmarks -k "not acceptance and not parallel" --egbench-baseline-dir baselines \
    --egbench-require-baseline --egbench-fallback-ref --egbench-ref-pairs 1 --durations=10 \
    --egbench-json $OUT/nightly.json --egbench-report $TMPDIR/nightly.md > $OUT/nightly.log 2>&1
  echo "nightly stage step (GPU 0, CPUs $H0) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt
}
gpu1() {
  export CUDA_VISIBLE_DEVICES=1 TMPDIR=/tmp/t1; mkdir -p $TMPDIR; local T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H1 $P benchmarks/test_acceptance.py --egbench-runtime compiled --durations=5 \
    --egbench-json $OUT/spec-compiled.json --egbench-report $TMPDIR/spec-compiled.md > $OUT/spec-compiled.log 2>&1
  echo "acceptance, compiled (GPU 1, CPUs $H1) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt
}
gpu0 & sleep 2; gpu1 & wait
(cd /tmp && tar czf $OUT/ab-and-reports.tgz $(ls -d t0/egbench-ab-* 2>/dev/null) t0/nightly.md t1/spec-compiled.md 2>/dev/null)
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|compil\|Error\|error" $f | cut -c1-220 | tail -12; done
