# ===== .devscripts/call4.sh
#!/bin/bash
# session 2, call 1 (lease C): compiled prefill + decode on the LM (bf16, nf4, int8), eager LM for the prefill comparison,
# compiled speculative decoding (acceptance), compiled stage suite
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R /tmp/nobase
P="python3 -m pytest -p pytest_egbench.plugin --egbench -q -p no:cacheprovider -W ignore::DeprecationWarning --egbench-baseline-dir /tmp/nobase"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/gpu.txt; lscpu | grep -i "model name" >> $R/gpu.txt; hostname >> $R/gpu.txt; nproc >> $R/gpu.txt
python3 -c "import torch,transformers,bitsandbytes; print(torch.__version__, transformers.__version__, bitsandbytes.__version__)" >> $R/gpu.txt
T0=$(date +%s); st() { echo "$1 rc=$2 at $(( $(date +%s) - T0 )) s" | tee -a $R/steps.txt; }
for q in bf16 nf4; do
  timeout 150 $P benchmarks/test_lm_stages.py --egbench-quant $q --egbench-runtime compiled --egbench-json $R/lm-$q-compiled.json > $R/lm-$q-compiled.log 2>&1; st "lm $q compiled" $?
done
for q in bf16 nf4; do
  timeout 60 $P benchmarks/test_lm_stages.py --egbench-quant $q --egbench-runtime eager --egbench-json $R/lm-$q-eager.json > $R/lm-$q-eager.log 2>&1; st "lm $q eager" $?
done
timeout 100 $P benchmarks/test_lm_stages.py --egbench-quant int8 --egbench-runtime compiled --egbench-json $R/lm-int8-compiled.json > $R/lm-int8-compiled.log 2>&1; st "lm int8 compiled" $?
timeout 200 $P benchmarks/test_acceptance.py --egbench-runtime compiled -s --egbench-json $R/acc-compiled.json > $R/acc-compiled.log 2>&1; st "acceptance compiled" $?
left=$(( 575 - ($(date +%s) - T0) ))
timeout $left $P benchmarks/test_model_stages.py --egbench-models eventgpt,video_llava,llava --egbench-runtime compiled --egbench-json $R/stages-compiled.json > $R/stages-compiled.log 2>&1; st "stages compiled" $?
tar czf $OUT/r.tgz -C $OUT r; ls -la $OUT
tail -3 $R/*.log | cut -c1-300
# ===== .devscripts/call5.sh
#!/bin/bash
# session 2, call 2 (lease D): issue 11's A/B study in the compiled runtime (prefill and decode compiled), NF4, 3 arms,
# 24 steady rounds a process; the ref arm's medians are this lease's compiled LM figures
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,power.limit,temperature.gpu --format=csv > $R/gpu.txt; lscpu | grep -i "model name" >> $R/gpu.txt; nproc >> $R/gpu.txt
(while sleep 20; do nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu --format=csv,noheader >> $R/smi.txt; done) &
timeout 555 python3 tools/ab_study.py --out $R/ab --rounds 10 --slow 0.05 --k 1 -- -p pytest_egbench.plugin --egbench benchmarks/test_lm_stages.py --egbench-runtime compiled --egbench-rounds 24 -W ignore::DeprecationWarning > $R/ab.log 2>&1
echo "ab rc=$?" >> $R/ab.log
kill %1
tar czf $OUT/r.tgz -C $OUT r; tail -30 $R/ab.log | cut -c1-250
# ===== .devscripts/call6.sh
#!/bin/bash
# session 2, call 3 (lease E): compiled speculative decoding (EventGPT -> LLaVA-1.5), then the compiled bf16 LM (cross-lease)
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R /tmp/nobase
P="python3 -m pytest -p pytest_egbench.plugin --egbench -q -p no:cacheprovider -W ignore::DeprecationWarning --egbench-baseline-dir /tmp/nobase"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv > $R/gpu.txt; lscpu | grep -i "model name" >> $R/gpu.txt
T0=$(date +%s); st() { echo "$1 rc=$2 at $(( $(date +%s) - T0 )) s" | tee -a $R/steps.txt; }
timeout 300 $P benchmarks/test_acceptance.py -k "llava and not video" --egbench-runtime compiled -s --egbench-json $R/acc-compiled.json > $R/acc-compiled.log 2>&1; st "acceptance compiled" $?
left=$(( 450 - ($(date +%s) - T0) ))
timeout $left $P benchmarks/test_lm_stages.py --egbench-quant bf16 --egbench-runtime compiled --egbench-json $R/lm-bf16-compiled.json > $R/lm-bf16-compiled.log 2>&1; st "lm bf16 compiled" $?
tar czf $OUT/r.tgz -C $OUT r; grep -v DEBUG $R/acc-compiled.log | grep -v "^\s*$" | tail -40 | cut -c1-250
