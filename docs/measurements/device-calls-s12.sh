##### .devscripts/prelude.sh
# sourced by every device call of session 12: install the wheels, check out the wanted commit,
# record the machine, split the host's CPUs in two halves (H0, H1), define P (pytest on the GPU) and
# step NAME GPU CPUS ARGS... (one pytest process, timed, its log and json under $OUT)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
want=$(cat .devscripts/want)
if [ "$(git rev-parse HEAD)" != "$want" ]; then git fetch -q .devscripts/main.bundle main:refs/heads/egb-local && [ "$(git rev-parse egb-local)" = "$want" ] && git reset -q egb-local || { echo "device HEAD $(git rev-parse HEAD) is not $want"; exit 3; }; fi
git log --oneline -1 | cut -c1-80 > $OUT/steps.txt; git status --short --untracked-files=no >> $OUT/steps.txt
nvidia-smi --query-gpu=index,name,driver_version,uuid --format=csv >> $OUT/steps.txt; lscpu | grep -i "model name" >> $OUT/steps.txt; nproc >> $OUT/steps.txt
read H0 H1 < <(python3 -c "import os; c=sorted(os.sched_getaffinity(0)); h=len(c)//2; print(','.join(map(str,c[:h])), ','.join(map(str,c[h:])))")
END=$(( $(date +%s) + ${LIM:-580} ))
P="python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider --egbench --egbench-device cuda -W ignore::DeprecationWarning --durations=0"
NIGHTLY="--egbench-baseline-dir=baselines --egbench-require-baseline --egbench-fallback-ref --egbench-ref-pairs 1"
mkdir -p /tmp/empty
step() {  # step NAME GPU CPUS pytest-args...: runs until END at the latest
  local name=$1 gpu=$2 cpus=$3; shift 3
  local left=$(( END - $(date +%s) )); [ $left -gt 20 ] || { echo "$name: no time left" >> $OUT/steps.txt; return; }
  local t0=$(date +%s)
  CUDA_VISIBLE_DEVICES=$gpu TMPDIR=/tmp/t$gpu timeout $left taskset -c $cpus $P "$@" --egbench-json=$OUT/$name.json > $OUT/$name.log 2>&1
  echo "$name (GPU $gpu) rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
}
mkdir -p /tmp/t0 /tmp/t1
##### .devscripts/s12-a.sh (call 1)
#!/bin/bash
# session 12 call 1 (nvidia-h200-x2): what each step of the nightly costs on one GPU with the compile fixes.
# GPU 0: the stage step (workflow command) -> the GPU unit tests -> the acceptance benchmarks (eager, no baseline)
# GPU 1: the compiled step's selection with no baseline (its run goes into the compiled baseline) -> parallel prefill (eager)
set -u; . .devscripts/prelude.sh
K='not acceptance and not parallel'
( step stages 0 $H0 benchmarks -k "$K" $NIGHTLY
  t0=$(date +%s); CUDA_VISIBLE_DEVICES=0 timeout $(( END - $(date +%s) )) taskset -c $H0 python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider -m gpu tests -rs -q > $OUT/gpu-tests.log 2>&1
  echo "gpu-tests (GPU 0) rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
  step acceptance 0 $H0 benchmarks -k acceptance --egbench-baseline-dir=/tmp/empty ) & sleep 3
( step compiled 1 $H1 --egbench-runtime compiled benchmarks/test_lm_stages.py benchmarks/test_model_stages.py benchmarks/test_memory.py -k "not llava-1" --egbench-baseline-dir=/tmp/empty
  step parallel 1 $H1 benchmarks -k parallel --egbench-baseline-dir=/tmp/empty ) & wait
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|exit status\|^FAILED\|compiled .* in " $f | cut -c1-200 | tail -12; done
##### .devscripts/s12-b.sh (call 2: LIM=560 bash .devscripts/s12-b.sh)
#!/bin/bash
# session 12 call 2 (nvidia-h200-x2), at 19a97ca (the nightly's new step selections, baselines with the call-1 lease):
# GPU 0: tools/compiled_prefill.py (what moves the compiled prefill) -> the nightly compiled step as the workflow runs it
# GPU 1: the nightly spec step as the workflow runs it -> the GPU unit tests -> compiled acceptance, LLaVA-1.5 target
set -u; . .devscripts/prelude.sh
( t0=$(date +%s); CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/indS timeout 200 taskset -c $H0 python3 tools/compiled_prefill.py --out $OUT/prefill-study --replays 100 --profile 10 > $OUT/prefill-study.log 2>&1
  echo "prefill study (GPU 0) rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 step compiled 0 $H0 --egbench-runtime compiled benchmarks/test_lm_stages.py benchmarks/test_model_stages.py benchmarks/test_memory.py -k "not llava-1" $NIGHTLY ) & sleep 3
( step spec 1 $H1 benchmarks -k "acceptance or parallel" --egbench-rounds 3 --egbench-warmup 1 --egbench-baseline-dir=baselines
  t0=$(date +%s); CUDA_VISIBLE_DEVICES=1 timeout $(( END - $(date +%s) )) taskset -c $H1 python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider --continue-on-collection-errors -m gpu tests -rs -q > $OUT/gpu-tests.log 2>&1
  echo "gpu-tests (GPU 1) rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
  step spec-compiled 1 $H1 --egbench-runtime compiled benchmarks/test_acceptance.py -k "llava and not video" --egbench-baseline-dir=/tmp/empty ) & wait
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|exit status\|^FAILED\|compiled .* in \|judg\|median\|profiled\|clocks" $f | cut -c1-200 | tail -14; done
##### call 3 (the same lease, warm; the checkout as call 2 left it)
export PYTHONPATH=/tmp/site:$PWD; read H0 H1 < <(python3 -c "import os; c=sorted(os.sched_getaffinity(0)); h=len(c)//2; print(','.join(map(str,c[:h])), ','.join(map(str,c[h:])))"); git log --oneline -1 | cut -c1-60; for g in 0 1; do H=$H0; [ $g = 1 ] && H=$H1; (CUDA_VISIBLE_DEVICES=$g TORCHINDUCTOR_CACHE_DIR=/tmp/indS$g timeout 170 taskset -c $H python3 tools/compiled_prefill.py --out /tmp/ps$g --replays 100 --profile 10 > /tmp/ps$g.log 2>&1; echo "gpu $g rc=$?" >> /tmp/ps$g.log) & done; wait; tar czf $OUT/prefill-study.tgz /tmp/ps0 /tmp/ps1 /tmp/ps0.log /tmp/ps1.log
##### .devscripts/s12-c.sh (call 4: LIM=360 bash .devscripts/s12-c.sh)
#!/bin/bash
# session 12 call 4 (nvidia-h200-x2, the last ~370 s of the session's device time), at d68a51d:
# GPU 0: the nightly stage step (the baseline now holds call 1's host run)
# GPU 1: the nightly spec step as the workflow runs it now (3 rounds, --egbench-gate exact,rate,memory) -> the compiled LM alone
set -u; . .devscripts/prelude.sh
( step stages 0 $H0 benchmarks -k "not acceptance and not parallel" $NIGHTLY ) & sleep 3
( step spec 1 $H1 benchmarks -k "acceptance or parallel" --egbench-rounds 3 --egbench-warmup 1 --egbench-gate exact,rate,memory --egbench-baseline-dir=baselines
  step compiled-lm 1 $H1 --egbench-runtime compiled benchmarks/test_lm_stages.py $NIGHTLY ) & wait
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|exit status\|^FAILED\|compiled .* in \|judged again\|verdicts:" $f | cut -c1-200 | tail -12; done
