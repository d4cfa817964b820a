#!/bin/bash
# session 7 call 1: issue 11's H200 A/B study, compiled bf16 LM (3 arms: ref, same, slow 5 %), 10 rounds or as many as fit
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.limit --format=csv; lscpu | grep -i "model name\|^CPU(s)"; python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)") > $R/host.txt 2>&1
timeout 555 python3 tools/ab_study.py --out $R/ab --rounds 10 --slow 0.05 --k 1 -- -p pytest_egbench.plugin --egbench benchmarks/test_lm_stages.py --egbench-runtime compiled --egbench-quant bf16 --egbench-rounds 24 -W ignore::DeprecationWarning > $R/ab.log 2>&1
echo "ab rc=$?" >> $R/ab.log
tar czf $OUT/r.tgz -C $OUT r; cat $R/host.txt; grep -v DEBUG $R/ab.log | tail -25 | cut -c1-300
# ---- call 2 (same lease, machine still held) ----
#!/bin/bash
# session 7 call 2 (continues call 1 without a probe process or the A/A arm): issue 11's H200 A/B study, compiled bf16 LM (3 arms: ref, same, slow 5 %), 10 rounds or as many as fit
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.limit --format=csv; lscpu | grep -i "model name\|^CPU(s)"; python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)") > $R/host.txt 2>&1
timeout 545 python3 tools/ab_study.py --out $R/ab --rounds 8 --no-same --base 0.016456 0.076074 --slow 0.05 --k 1 -- -p pytest_egbench.plugin --egbench benchmarks/test_lm_stages.py --egbench-runtime compiled --egbench-quant bf16 --egbench-rounds 24 -W ignore::DeprecationWarning > $R/ab.log 2>&1
echo "ab rc=$?" >> $R/ab.log
tar czf $OUT/r.tgz -C $OUT r; cat $R/host.txt; grep -v DEBUG $R/ab.log | tail -25 | cut -c1-300
