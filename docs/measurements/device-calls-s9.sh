#!/bin/bash
# session 9: two full stage-suite runs at once, one per GPU of an nvidia-h200-x2 host, each on its own
# 16 CPUs (taskset; the A/B pins its pair to the last 4 of them). Modes: nightly = the workflow's stage
# step (committed baselines, require-baseline, fallback A/B with the workflow's pairs); refhead = --egbench-ref HEAD, 1 pair.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
want=a0cbedceddae8d71443c63b86eee5abbf70c4972
if [ "$(git rev-parse HEAD)" != $want ]; then git fetch -q .devscripts/main.bundle main:refs/heads/egb-local && [ "$(git rev-parse egb-local)" = $want ] && git reset -q egb-local || { echo "device HEAD $(git rev-parse HEAD) is not $want"; exit 3; }; fi
git log --oneline -1 > $OUT/steps.txt; git status --short | head -5 >> $OUT/steps.txt
nvidia-smi --query-gpu=index,name,driver_version,clocks.max.sm --format=csv >> $OUT/steps.txt; lscpu | grep -i "model name" >> $OUT/steps.txt; nproc >> $OUT/steps.txt
PAIRS=$(grep -o "egbench-ref-pairs [0-9]*" .github/workflows/nightly-gpu.yml | head -1 | cut -d" " -f2)
one() { # gpu cpus mode tag
  local gpu=$1 cpus=$2 mode=$3 tag=$4 extra
  if [ "$mode" = nightly ]; then extra="--egbench-baseline-dir baselines --egbench-require-baseline --egbench-fallback-ref --egbench-ref-pairs $PAIRS"
  else extra="--egbench-ref HEAD --egbench-ref-pairs 1"; fi
  export CUDA_VISIBLE_DEVICES=$gpu TMPDIR=/tmp/t$gpu; mkdir -p $TMPDIR
  local T0=$(date +%s)
  timeout ${LIM:-583} taskset -c $cpus python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider --egbench --egbench-device cuda benchmarks \
    -k "not acceptance and not parallel" $extra --durations=40 \
    --egbench-json $OUT/$tag.json --egbench-report $TMPDIR/$tag.md -W ignore::DeprecationWarning > $OUT/$tag.log 2>&1
  echo "$tag ($mode, GPU $gpu, CPUs $cpus) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt
  cp $OUT/$tag.log $TMPDIR/ 2>/dev/null
  (cd $TMPDIR && tar czf $OUT/$tag-ab.tgz $(ls -d egbench-ab-* 2>/dev/null) $tag.log $tag.md 2>/dev/null)
}
read H0 H1 < <(python3 -c "import os; c=sorted(os.sched_getaffinity(0)); h=len(c)//2; print(','.join(map(str,c[:h])), ','.join(map(str,c[h:])))")
echo "CPU halves: $H0 | $H1" >> $OUT/steps.txt
one 0 $H0 $1 ${3:-g0-$1} &
sleep 3
one 1 $H1 $2 ${4:-g1-$2} &
wait
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|pair 1/1\|pair 2/2\|confirming\|regress\|improv\|not compared\|fallback\|differs" $f | cut -c1-260 | tail -14; done
