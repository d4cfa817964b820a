#!/bin/bash
# session 14 (2026-12-01): the device calls. Calls 1-2 on nvidia-h200 lease H, call 3 on lease I, call 4 on lease J (three GPUs, by UUID in h200-s14-steps.txt).
# Each call ran "LIM=<s> bash .devscripts/s14-<a|b|c|d>.sh" over the checkout, carrying .whl (../shared/tools/device-wheels.sh)
# and .devscripts (the prelude, the scripts, the commit wanted as a git bundle). The prelude is the one of device-calls-s13.sh.

# ---- .devscripts/s14-a.sh
# session 14 call 1 (nvidia-h200): the compiled runtime replaying CUDA graphs captured once
# 1. the GPU test of the runtime (tokens against eager, no reset, graphs captured once)
# 2. tools/compiled_prefill.py: prefill replays, profiled idle, host time of a prefill call and a decode step
# 3. tools/compiled_decode.py bf16: decode ms/token against session 11's 5.16 ms
set -u; . .devscripts/prelude.sh
t0=$(date +%s); CUDA_VISIBLE_DEVICES=0 timeout 150 python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider -m gpu tests/models/test_runtime.py -rs -q > $OUT/gpu-test.log 2>&1; echo "gpu-test rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
t0=$(date +%s); CUDA_VISIBLE_DEVICES=0 timeout 220 python3 tools/compiled_prefill.py --out $OUT/study --replays 100 --profile 10 > $OUT/prefill-study.log 2>&1; echo "prefill-study rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
gzip -f $OUT/study/compiled-prefill.json; mv $OUT/study/compiled-prefill.json.gz $OUT/prefill-study.json.gz; rmdir $OUT/study
left=$(( END - $(date +%s) - 5 ))
t0=$(date +%s); CUDA_VISIBLE_DEVICES=0 timeout $left python3 tools/compiled_decode.py --out $OUT/dec --quant bf16 --config default > $OUT/decode-bf16.log 2>&1; echo "decode-bf16 rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
mv $OUT/dec/compiled-decode.json $OUT/decode-bf16.json; rmdir $OUT/dec
cat $OUT/steps.txt; tail -30 $OUT/gpu-test.log | cut -c1-300; tail -30 $OUT/prefill-study.log; tail -20 $OUT/decode-bf16.log

# ---- .devscripts/s14-b.sh
# session 14 call 2 (same lease as call 1): the nightly's compiled step on the new runtime, against
# the committed compiled baseline without the A/B fallback (what changed, memory gate, cost)
set -u; . .devscripts/prelude.sh
step compiled 0 $ALL --egbench-runtime compiled benchmarks/test_lm_stages.py benchmarks/test_model_stages.py benchmarks/test_memory.py -k "not llava-1" --egbench-baseline-dir=baselines
cat $OUT/steps.txt
for f in $OUT/compiled.log; do echo "== $f"; grep -h "passed\|failed\|exit status\|^FAILED\|compiled .* in \|judged\|verdicts:\|inconclusive\|differs" $f | cut -c1-250 | tail -30; done
gzip -f $OUT/compiled.json

# ---- .devscripts/s14-c.sh
# session 14 call 3 (nvidia-h200, a fresh lease, I): the nightly's compiled step exactly as the workflow
# now runs it (prefill and decode judged on the GPU's probes, eager stages excluded from the gate), against
# the compiled baseline made of call 2's run on lease H; first with a cold inductor cache, then warm
set -u; . .devscripts/prelude.sh
for run in cold warm; do
step compiled-$run 0 $ALL --egbench-runtime compiled benchmarks/test_lm_stages.py benchmarks/test_model_stages.py benchmarks/test_memory.py -k "not llava-1" --egbench-gate-exclude load,preprocess,vision,ttft,total $NIGHTLY
done
cat $OUT/steps.txt
for f in $OUT/compiled-*.log; do echo "== $f"; grep -h "passed\|failed\|exit status\|^FAILED\|compiled .* in \|judged\|verdicts:\|inconclusive\|differs\|fallback" $f | cut -c1-250 | tail -16; done
gzip -f $OUT/compiled-*.json

# ---- .devscripts/s14-d.sh
# session 14 call 4 (nvidia-h200, a fresh lease, J): the nightly's compiled step exactly as the workflow
# runs it, against the compiled baseline of call 2 (lease H), inductor cache cold
set -u; . .devscripts/prelude.sh
step compiled 0 $ALL --egbench-runtime compiled benchmarks/test_lm_stages.py benchmarks/test_model_stages.py benchmarks/test_memory.py -k "not llava-1" --egbench-gate-exclude load,preprocess,vision,ttft,total $NIGHTLY
cat $OUT/steps.txt
grep -h "passed\|failed\|exit status\|^FAILED\|compiled .* in \|verdicts:\|differs\|fallback\|calibration" $OUT/compiled.log | cut -c1-250 | tail -20
sed -n '/^\[lm\]/,/^\[memory\]/p' $OUT/compiled.log | cut -c1-200
gzip -f $OUT/compiled.json
