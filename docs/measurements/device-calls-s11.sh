##### .devscripts/next-s11.sh
#!/bin/bash
# next session (nvidia-h200-x2, one call, ~600 s): GPU 0 = the nightly's stage step with the per-benchmark
# fallback for inconclusive latencies (90b1cfd: expect exit 0 where the machine matches one baseline run);
# GPU 1 = the nightly's compiled step (its cost, and its fallback A/B where the machine differs).
# Update .devscripts/want and main.bundle (git bundle create .devscripts/main.bundle LANDED..main) first.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
want=$(cat .devscripts/want)
if [ "$(git rev-parse HEAD)" != $want ]; then git fetch -q .devscripts/main.bundle main:refs/heads/egb-local && [ "$(git rev-parse egb-local)" = $want ] && git reset -q egb-local || { echo "device HEAD $(git rev-parse HEAD) is not $want"; exit 3; }; fi
git log --oneline -1 | cut -c1-80 > $OUT/steps.txt; git status --short --untracked-files=no >> $OUT/steps.txt
nvidia-smi --query-gpu=index,name,driver_version --format=csv >> $OUT/steps.txt; lscpu | grep -i "model name" >> $OUT/steps.txt
read H0 H1 < <(python3 -c "import os; c=sorted(os.sched_getaffinity(0)); h=len(c)//2; print(','.join(map(str,c[:h])), ','.join(map(str,c[h:])))")
END=$(( $(date +%s) + ${LIM:-580} ))
P="python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider --egbench --egbench-device cuda -W ignore::DeprecationWarning"
J="--egbench-baseline-dir=baselines --egbench-require-baseline --egbench-fallback-ref --egbench-ref-pairs 1 --durations=10"
( export CUDA_VISIBLE_DEVICES=0 TMPDIR=/tmp/t0; mkdir -p $TMPDIR; T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H0 $P benchmarks -k "not acceptance and not parallel" $J --egbench-json=$OUT/nightly.json > $OUT/nightly.log 2>&1
  echo "nightly stage step (GPU 0) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt ) & sleep 4
( export CUDA_VISIBLE_DEVICES=1 TMPDIR=/tmp/t1; mkdir -p $TMPDIR; T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H1 $P --egbench-runtime compiled benchmarks/test_lm_stages.py benchmarks/test_model_stages.py benchmarks/test_memory.py $J --egbench-json=$OUT/compiled.json > $OUT/compiled.log 2>&1
  echo "compiled step (GPU 1) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt ) & wait
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|judging\|fallback\|exit status" $f | cut -c1-220 | tail -8; done
##### .devscripts/s11-b.sh
#!/bin/bash
# session 11 call 2 (nvidia-h200-x2): GPU 0 = the nightly stage step at 178cc65 against the committed baselines,
# then again against them plus this host's run (saved by GPU 1); GPU 1 = a plain stage-suite run with no baseline
# (its results file is added to the baseline), then test_memory alone (model_peak must not depend on what ran before).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
want=$(cat .devscripts/want)
if [ "$(git rev-parse HEAD)" != $want ]; then git fetch -q .devscripts/main.bundle main:refs/heads/egb-local && [ "$(git rev-parse egb-local)" = $want ] && git reset -q egb-local || { echo "device HEAD $(git rev-parse HEAD) is not $want"; exit 3; }; fi
git log --oneline -1 | cut -c1-80 > $OUT/steps.txt; git status --short --untracked-files=no >> $OUT/steps.txt
nvidia-smi --query-gpu=index,name,driver_version --format=csv >> $OUT/steps.txt; lscpu | grep -i "model name" >> $OUT/steps.txt
read H0 H1 < <(python3 -c "import os; c=sorted(os.sched_getaffinity(0)); h=len(c)//2; print(','.join(map(str,c[:h])), ','.join(map(str,c[h:])))")
END=$(( $(date +%s) + ${LIM:-585} ))
P="python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider --egbench --egbench-device cuda -W ignore::DeprecationWarning"
J="--egbench-require-baseline --egbench-fallback-ref --egbench-ref-pairs 1 --durations=10"
K='not acceptance and not parallel'
mkdir -p /tmp/empty
( export CUDA_VISIBLE_DEVICES=1 TMPDIR=/tmp/t1; mkdir -p $TMPDIR; T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H1 $P benchmarks -k "$K" --egbench-baseline-dir=/tmp/empty --egbench-json=$OUT/save.json > $OUT/save.log 2>&1
  echo "plain stage suite, no baseline (GPU 1) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt; touch /tmp/saved; T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H1 $P benchmarks/test_memory.py --egbench-baseline-dir=/tmp/empty --egbench-json=$OUT/memory-alone.json > $OUT/memory-alone.log 2>&1
  echo "test_memory alone (GPU 1) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt ) & sleep 4
( export CUDA_VISIBLE_DEVICES=0 TMPDIR=/tmp/t0; mkdir -p $TMPDIR; T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H0 $P benchmarks -k "$K" --egbench-baseline-dir=baselines $J --egbench-json=$OUT/nightly.json > $OUT/nightly.log 2>&1
  echo "nightly stage step, committed baselines (GPU 0) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt
  while [ ! -e /tmp/saved ] && [ $(date +%s) -lt $END ]; do sleep 2; done
  cp -r baselines /tmp/b2 && python3 -m pytest_egbench.baselines add $OUT/save.json --dir /tmp/b2 >> $OUT/steps.txt 2>&1 && mkdir -p $OUT/b2 && cp /tmp/b2/nvidia-h200__7b-nf4__*.json $OUT/b2/
  T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H0 $P benchmarks -k "$K" --egbench-baseline-dir=/tmp/b2 $J --egbench-json=$OUT/nightly2.json > $OUT/nightly2.log 2>&1
  echo "nightly stage step, baselines + this host's run (GPU 0) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt ) & wait
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|exit status\|^FAILED" $f | cut -c1-200 | tail -6; done
##### .devscripts/s11-c.sh
#!/bin/bash
# session 11 call 3: only GPU 0 (the nightly stage step against the committed baselines, now holding the s11 host run);
# was: next session (nvidia-h200-x2, one call, ~600 s): GPU 0 = the nightly's stage step with the per-benchmark
# fallback for inconclusive latencies (90b1cfd: expect exit 0 where the machine matches one baseline run);
# GPU 1 = the nightly's compiled step (its cost, and its fallback A/B where the machine differs).
# Update .devscripts/want and main.bundle (git bundle create .devscripts/main.bundle LANDED..main) first.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
want=$(cat .devscripts/want)
if [ "$(git rev-parse HEAD)" != $want ]; then git fetch -q .devscripts/main.bundle main:refs/heads/egb-local && [ "$(git rev-parse egb-local)" = $want ] && git reset -q egb-local || { echo "device HEAD $(git rev-parse HEAD) is not $want"; exit 3; }; fi
git log --oneline -1 | cut -c1-80 > $OUT/steps.txt; git status --short --untracked-files=no >> $OUT/steps.txt
nvidia-smi --query-gpu=index,name,driver_version --format=csv >> $OUT/steps.txt; lscpu | grep -i "model name" >> $OUT/steps.txt
read H0 H1 < <(python3 -c "import os; c=sorted(os.sched_getaffinity(0)); h=len(c)//2; print(','.join(map(str,c[:h])), ','.join(map(str,c[h:])))")
END=$(( $(date +%s) + ${LIM:-420} ))
P="python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider --egbench --egbench-device cuda -W ignore::DeprecationWarning"
J="--egbench-baseline-dir=baselines --egbench-require-baseline --egbench-fallback-ref --egbench-ref-pairs 1 --durations=10"
( export CUDA_VISIBLE_DEVICES=0 TMPDIR=/tmp/t0; mkdir -p $TMPDIR; T0=$(date +%s)
  timeout $(( END - $(date +%s) )) taskset -c $H0 $P benchmarks -k "not acceptance and not parallel" $J --egbench-json=$OUT/nightly.json > $OUT/nightly.log 2>&1
  echo "nightly stage step (GPU 0) rc=$? in $(( $(date +%s) - T0 )) s" >> $OUT/steps.txt ) & sleep 4
wait
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|judging\|fallback\|exit status" $f | cut -c1-220 | tail -8; done
