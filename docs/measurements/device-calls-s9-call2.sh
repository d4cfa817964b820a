#!/bin/bash
# session 9, call 2: GPU 0 = the nightly's stage step (committed baselines; a regression against the
# baseline is now judged again by a same-machine A/B against the baseline's commit), then, while time
# is left, compiled LM standalone (NF4, bf16) for the cross-lease figure; GPU 1 = --egbench-ref HEAD,
# full stage suite, one pair. Each GPU on its own half of the CPUs.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
want=$(cat .devscripts/want)
if [ "$(git rev-parse HEAD)" != $want ]; then git fetch -q .devscripts/main.bundle main:refs/heads/egb-local && [ "$(git rev-parse egb-local)" = $want ] && git reset -q egb-local || { echo "device HEAD $(git rev-parse HEAD) is not $want"; exit 3; }; fi
git log --oneline -1 > $OUT/steps.txt; git status --short | head -5 >> $OUT/steps.txt
nvidia-smi --query-gpu=index,name,driver_version,clocks.max.sm --format=csv >> $OUT/steps.txt; lscpu | grep -i "model name" >> $OUT/steps.txt; nproc >> $OUT/steps.txt
PAIRS=$(grep -o "egbench-ref-pairs [0-9]*" .github/workflows/nightly-gpu.yml | head -1 | cut -d" " -f2)
read H0 H1 < <(python3 -c "import os; c=sorted(os.sched_getaffinity(0)); h=len(c)//2; print(','.join(map(str,c[:h])), ','.join(map(str,c[h:])))")
END=$(( $(date +%s) + 585 ))
P="python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider --egbench --egbench-device cuda -W ignore::DeprecationWarning"
gpu0() {
  export CUDA_VISIBLE_DEVICES=0 TMPDIR=/tmp/t0; mkdir -p $TMPDIR; local T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H0 $P benchmarks -k "not acceptance and not parallel" --egbench-baseline-dir baselines \
    --egbench-require-baseline --egbench-fallback-ref --egbench-ref-pairs $PAIRS --durations=15 \
    --egbench-json $OUT/nightly.json --egbench-report $TMPDIR/nightly.md > $TMPDIR/nightly.log 2>&1
  echo "nightly stage step (GPU 0, CPUs $H0) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt
  for q in nf4 bf16; do
    local left=$(( END - $(date +%s) - 5 )); [ $left -lt 150 ] && break; T0=$(date +%s)
    timeout $left taskset -c $H0 $P benchmarks/test_lm_stages.py --egbench-runtime compiled --egbench-quant $q \
      --egbench-json $TMPDIR/lm-compiled-$q.json > $TMPDIR/lm-compiled-$q.log 2>&1
    echo "LM compiled $q (GPU 0) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt
  done
  (cd $TMPDIR && tar czf $OUT/gpu0.tgz $(ls -d egbench-ab-* 2>/dev/null) *.log *.md lm-*.json 2>/dev/null)
}
gpu1() {
  export CUDA_VISIBLE_DEVICES=1 TMPDIR=/tmp/t1; mkdir -p $TMPDIR; local T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H1 $P benchmarks -k "not acceptance and not parallel" --egbench-ref HEAD --egbench-ref-pairs 1 \
    --egbench-json $OUT/refhead.json > $TMPDIR/refhead.log 2>&1
  echo "ref HEAD (GPU 1, CPUs $H1) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt
  (cd $TMPDIR && tar czf $OUT/gpu1.tgz $(ls -d egbench-ab-* 2>/dev/null) refhead.log 2>/dev/null)
}
gpu0 & sleep 3; gpu1 & wait
cat $OUT/steps.txt
for f in /tmp/t0/nightly.log /tmp/t1/refhead.log; do echo "== $f"; grep -h "passed\|failed\|pair 1/1\|pair 2/2\|confirm\|regress\|not compared\|fallback\|differs\|judging them\|judged again" $f | cut -c1-260 | tail -14; done
grep -h "compiled .* in\|passed" /tmp/t0/lm-*.log 2>/dev/null | cut -c1-200
