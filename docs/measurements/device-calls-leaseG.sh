# H200 lease G (2026-11-30): the device calls of this session, in order; each ran as 'bash SCRIPT' in the checkout
# (carry .whl .devscripts). main.bundle: this checkout's commits, since the device's .git holds the landed main only.

#### .devscripts/s8-save.sh
#!/bin/bash
# session 8, call 1: add a run of the current commit to the committed H200 NF4 baseline (stage suite), timed
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
# the device's .git is the landed main: bring this checkout's commits, HEAD to ours (tree unchanged)
git fetch -q .devscripts/main.bundle main:refs/heads/egb-local && git reset -q egb-local
git status --short > $R/git-status.txt; git log --oneline -1 >> $R/git-status.txt
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/gpu.txt; lscpu | grep -i "model name" >> $R/gpu.txt; nproc >> $R/gpu.txt
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $R/gpu.txt
T0=$(date +%s)
timeout 570 python3 -m pytest -p pytest_egbench.plugin --egbench --egbench-device cuda benchmarks -k "not acceptance and not parallel" \
  --egbench-baseline-dir baselines --egbench-save --egbench-json $R/save.json --egbench-report $R/save.md -W ignore::DeprecationWarning > $R/save.log 2>&1
echo "save rc=$? in $(( $(date +%s) - T0 )) s" | tee -a $R/steps.txt
cp baselines/nvidia-h200__7b-nf4__*.json $R/
git status --short >> $R/steps.txt
tar czf $OUT/r.tgz -C $OUT r; cat $R/gpu.txt $R/git-status.txt; grep -v DEBUG $R/save.log | tail -25 | cut -c1-250

#### .devscripts/s8-ref.sh
#!/bin/bash
# session 8: --egbench-ref HEAD on unchanged code, full stage suite, one pair (as the nightly's fallback), one run
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
git fetch -q .devscripts/main.bundle main:refs/heads/egb-local 2>/dev/null; git reset -q egb-local
R=$OUT/r; mkdir -p $R; N=${1:-1}
git status --short > $R/git-status.txt; git log --oneline -1 >> $R/git-status.txt
T0=$(date +%s)
timeout 585 python3 -m pytest -p pytest_egbench.plugin --egbench --egbench-device cuda benchmarks -k "not acceptance and not parallel" --egbench-ref HEAD --egbench-ref-pairs 1 \
  --egbench-json $R/ref-head-$N.json -W ignore::DeprecationWarning > $R/ref-head-$N.log 2>&1
echo "ref HEAD run $N rc=$? in $(( $(date +%s) - T0 )) s" | tee -a $R/steps.txt
tar czf $OUT/r.tgz -C $OUT r; cat $R/git-status.txt; grep -h "passed\|failed\|pair 1/1\|regress\|not compared" $R/ref-head-$N.log | cut -c1-250 | tail -12

#### .devscripts/s8-diag.sh
#!/bin/bash
# session 8: the +45 % preprocess of test_model_stages[dsec_sample1_50ms-eventgpt-5] on unchanged code: does it repeat, by pair?
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
git fetch -q .devscripts/main.bundle main:refs/heads/egb-local 2>/dev/null; git reset -q egb-local
R=$OUT/r; mkdir -p $R; T0=$(date +%s)
for v in default blas1; do
  left=$(( 585 - ($(date +%s) - T0) )); [ $left -lt 120 ] && break
  if [ $v = blas1 ]; then export OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false; fi
  timeout $left python3 -m pytest -p pytest_egbench.plugin --egbench --egbench-device cuda benchmarks/test_model_stages.py -k "eventgpt" --egbench-ref HEAD --egbench-ref-pairs 2 \
    --egbench-json $R/diag-$v.json -W ignore::DeprecationWarning > $R/diag-$v.log 2>&1
  echo "$v rc=$? at $(( $(date +%s) - T0 )) s" | tee -a $R/steps.txt
  cp -r /tmp/egbench-ab-* $R/ 2>/dev/null; rm -rf /tmp/egbench-ab-*
done
tar czf $OUT/r.tgz -C $OUT r; python3 - <<'P'
import json,glob,os
for f in sorted(glob.glob(os.environ["OUT"]+"/r/diag-*.json")):
    d=json.load(open(f))
    for b in d["benchmarks"]:
        if b["name"].endswith(("::preprocess","::prefill","::decode")):
            m=b["extra_info"].get("verdict",{}).get("message",""); i=m.find("change")
            print(os.path.basename(f), b["name"][17:75], m[i:i+110])
P

#### .devscripts/s8-compiled.sh
#!/bin/bash
# session 8: the nightly's compiled step (as the workflow), saving its baseline, timed
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
git fetch -q .devscripts/main.bundle main:refs/heads/egb-local 2>/dev/null; git reset -q egb-local
R=$OUT/c; mkdir -p $R; T0=$(date +%s)
timeout 420 python3 -m pytest -p pytest_egbench.plugin --egbench --egbench-device cuda --egbench-runtime compiled \
  benchmarks/test_lm_stages.py benchmarks/test_model_stages.py benchmarks/test_memory.py --egbench-baseline-dir baselines --egbench-save \
  --egbench-json $R/compiled.json --egbench-report $R/compiled.md -W ignore::DeprecationWarning > $R/compiled.log 2>&1
echo "compiled rc=$? in $(( $(date +%s) - T0 )) s" | tee -a $R/steps.txt
cp baselines/*compiled*.json $R/ 2>/dev/null; git status --short >> $R/steps.txt
tar czf $OUT/c.tgz -C $OUT c; grep -v DEBUG $R/compiled.log | grep -v "^  " | tail -30 | cut -c1-220
