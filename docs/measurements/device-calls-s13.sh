#!/bin/bash
# session 13 (2026-12-01): the device calls, one nvidia-h200 (one GPU) lease for calls 1-2, another for call 3.
# Each call ran "LIM=<s> bash .devscripts/s13-<a|b|c>.sh" over the checkout, carrying .whl (../shared/tools/device-wheels.sh)
# and .devscripts (this prelude, the scripts, the commit wanted as a git bundle).

# ---- .devscripts/prelude.sh
# sourced by every device call of sessions 12-13: install the wheels, check out the wanted commit,
# record the machine, split the host's CPUs in two halves (H0, H1), define P (pytest on the GPU) and
# step NAME GPU CPUS ARGS... (one pytest process, timed, its log and json under $OUT)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
want=$(cat .devscripts/want)
if [ "$(git rev-parse HEAD)" != "$want" ]; then git fetch -q .devscripts/main.bundle main:refs/heads/egb-local && [ "$(git rev-parse egb-local)" = "$want" ] && git reset -q egb-local || { echo "device HEAD $(git rev-parse HEAD) is not $want"; exit 3; }; fi
git log --oneline -1 | cut -c1-80 > $OUT/steps.txt; git status --short --untracked-files=no >> $OUT/steps.txt
nvidia-smi --query-gpu=index,name,driver_version,uuid --format=csv >> $OUT/steps.txt; lscpu | grep -i "model name" >> $OUT/steps.txt; nproc >> $OUT/steps.txt
read H0 H1 < <(python3 -c "import os; c=sorted(os.sched_getaffinity(0)); h=len(c)//2; print(','.join(map(str,c[:h])), ','.join(map(str,c[h:])))")
ALL=$(python3 -c "import os; print(','.join(map(str,sorted(os.sched_getaffinity(0)))))")
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

# ---- .devscripts/s13-a.sh
# session 13 call 1 (nvidia-h200, one GPU): what the nightly costs where the machine is unlike every
# baseline run (the whole-step fallback, forced: --egbench-ref with the baselines' newest commit d68a51d
# and no baseline, which is what --egbench-fallback-ref runs then)
# 1. the compiled step's whole-step A/B (never measured since the compile fixes), inductor cache cold
# 2. the new spec step: acceptance, parallel prefill and token scaling at 1 round after the cold one
set -u; . .devscripts/prelude.sh
step compiled-ab 0 $ALL --egbench-runtime compiled benchmarks/test_lm_stages.py benchmarks/test_model_stages.py benchmarks/test_memory.py -k "not llava-1" --egbench-baseline-dir=/tmp/empty --egbench-require-baseline --egbench-ref d68a51d --egbench-ref-pairs 1
step spec 0 $ALL benchmarks -k "acceptance or parallel or token_scaling" --egbench-rounds 1 --egbench-warmup 0 --egbench-gate exact,rate,memory --egbench-baseline-dir=baselines
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|exit status\|^FAILED\|compiled .* in \|judged again\|verdicts:\|pair 1/1" $f | cut -c1-220 | tail -14; done

# ---- .devscripts/s13-b.sh
# session 13 call 2 (nvidia-h200): the stage step's whole-step A/B (forced as in call 1) with the
# nightly's new selection (token scaling moved to the spec step)
set -u; . .devscripts/prelude.sh
step stages-ab 0 $ALL benchmarks -k "not acceptance and not parallel and not token_scaling" --egbench-baseline-dir=/tmp/empty --egbench-require-baseline --egbench-ref d68a51d --egbench-ref-pairs 1
cat $OUT/steps.txt
for f in $OUT/*.log; do echo "== $f"; grep -h "passed\|failed\|exit status\|^FAILED\|judged again\|verdicts:\|pair .*/" $f | cut -c1-220 | tail -14; done

# ---- .devscripts/s13-c.sh
# session 13 call 3 (nvidia-h200, a fresh lease): the compiled prefill's idle time between kernels
# (tools/compiled_prefill.py, 100 replays a condition, 10 profiled, a graph of as many empty nodes),
# then the nightly's compiled step exactly as the workflow runs it (a fifth lease of compiled figures)
set -u; . .devscripts/prelude.sh
t0=$(date +%s); CUDA_VISIBLE_DEVICES=0 timeout 200 python3 tools/compiled_prefill.py --out $OUT/study --replays 100 --profile 10 > $OUT/prefill-study.log 2>&1; echo "prefill-study rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
gzip -f $OUT/study/compiled-prefill.json; mv $OUT/study/compiled-prefill.json.gz $OUT/prefill-study.json.gz; rmdir $OUT/study
step compiled 0 $ALL --egbench-runtime compiled benchmarks/test_lm_stages.py benchmarks/test_model_stages.py benchmarks/test_memory.py -k "not llava-1" $NIGHTLY
cat $OUT/steps.txt; cat $OUT/prefill-study.log | tail -22
for f in $OUT/compiled.log; do echo "== $f"; grep -h "passed\|failed\|exit status\|^FAILED\|compiled .* in \|judged again\|verdicts:\|pair .*/\|fallback" $f | cut -c1-220 | tail -16; done
