#!/bin/bash
# session 15 (2026-12-01): the device calls, all four on one nvidia-h200 lease (K: GPU-2596c5e6, made back to back while it stayed warm).
# Each call ran "LIM=<s> bash .devscripts/s15-<a|b|c|d>.sh" over the checkout at 3bcba98, carrying .whl (../shared/tools/device-wheels.sh)
# and .devscripts (the prelude below, the scripts, the commit wanted as a git bundle). LIM: 570, 575, 570, 440.

# ---- .devscripts/prelude.sh: the prelude of device-calls-s13.sh, with these two lines at its end
# session 15: inductor's and Triton's caches in an ignored folder of the checkout, kept while the lease stays warm
grep -qx '/.egbcache/' .git/info/exclude 2>/dev/null || echo '/.egbcache/' >> .git/info/exclude

# ---- .devscripts/s15-a.sh
# session 15 call 1 (nvidia-h200): the nightly's GPU unit tests (with the compiled speculative
# decoding of tiny models on CUDA graphs, new), the compiled-tuned bf16 decode on the runtime of
# session 14 (profiled), int8 in the compiled runtime, then the nightly's spec step
set -u; . .devscripts/prelude.sh
t0=$(date +%s); CUDA_VISIBLE_DEVICES=0 timeout 240 python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider -m gpu tests -rs -q --durations=15 > $OUT/gpu-tests.log 2>&1; echo "gpu-tests rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
t0=$(date +%s); CUDA_VISIBLE_DEVICES=0 timeout 260 python3 tools/compiled_decode.py --out $OUT/dec --quant bf16 --config cdt > $OUT/decode-bf16-tuned.log 2>&1; echo "decode-bf16-tuned rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
mv $OUT/dec/compiled-decode.json $OUT/decode-bf16-tuned.json 2>/dev/null
t0=$(date +%s); CUDA_VISIBLE_DEVICES=0 timeout 100 python3 tools/compiled_decode.py --out $OUT/dec --quant int8 --config default > $OUT/decode-int8.log 2>&1; echo "decode-int8 rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
mv $OUT/dec/compiled-decode.json $OUT/decode-int8.json 2>/dev/null; rm -rf $OUT/dec
step spec 0 $ALL benchmarks -k "acceptance or parallel or token_scaling" --egbench-rounds 1 --egbench-warmup 0 --egbench-gate exact,rate,memory --egbench-baseline-dir=baselines
cat $OUT/steps.txt; tail -25 $OUT/gpu-tests.log | cut -c1-250; tail -16 $OUT/decode-bf16-tuned.log; tail -12 $OUT/decode-int8.log | cut -c1-300
grep -h "passed\|failed\|exit status\|^FAILED\|verdicts:" $OUT/spec.log | cut -c1-220 | tail -8
cd $OUT && tar czf s15-call1.tar.gz *.log *.json && rm -f *.log *.json

# ---- .devscripts/s15-b.sh
# session 15 call 2 (the lease of call 1): the nightly's compiled step as the workflow runs it, inductor
# and Triton caches cold, then again warm (the runner keeps them); then the GPU unit tests
set -u; . .devscripts/prelude.sh
rm -rf .egbench-cache; export TORCHINDUCTOR_CACHE_DIR=$PWD/.egbcache/inductor TRITON_CACHE_DIR=$PWD/.egbcache/triton; rm -rf .egbcache
for run in cold warm; do
step compiled-$run 0 $ALL --egbench-runtime compiled benchmarks/test_lm_stages.py benchmarks/test_model_stages.py benchmarks/test_memory.py -k "not llava-1" --egbench-gate-exclude load,preprocess,vision,ttft,total $NIGHTLY
done
left=$(( END - $(date +%s) - 3 ))
t0=$(date +%s); CUDA_VISIBLE_DEVICES=0 timeout $left python3 -m pytest -p pytest_egbench.plugin -p no:cacheprovider -m gpu tests -rs -q --continue-on-collection-errors --durations=15 > $OUT/gpu-tests.log 2>&1; echo "gpu-tests rc=$? in $(( $(date +%s) - t0 )) s" >> $OUT/steps.txt
cat $OUT/steps.txt
for f in $OUT/compiled-*.log; do echo "== $f"; grep -h "passed\|failed\|exit status\|^FAILED\|compiled .* in \|verdicts:\|differs\|fallback" $f | cut -c1-250 | tail -14; done
tail -30 $OUT/gpu-tests.log | cut -c1-250
cd $OUT && tar czf s15-call2.tar.gz *.log *.json && rm -f *.log *.json

# ---- .devscripts/s15-c.sh
# session 15 call 3 (the lease of calls 1-2): the nightly's stage step as the workflow runs it,
# against the committed NF4 baseline, with the A/B fallback
set -u; . .devscripts/prelude.sh
step stages 0 $ALL benchmarks -k "not acceptance and not parallel and not token_scaling" $NIGHTLY
cat $OUT/steps.txt
grep -h "passed\|failed\|exit status\|^FAILED\|judged again\|verdicts:\|pair .*/\|fallback\|differs\|calibration" $OUT/stages.log | cut -c1-250 | tail -24
cd $OUT && tar czf s15-call3.tar.gz *.log *.json && rm -f *.log *.json

# ---- .devscripts/s15-d.sh
# session 15 call 4 (the lease of calls 1-3): speculative decoding in the compiled runtime on the 7B
# models (EventGPT drafting for LLaVA-1.5 and Video-LLaVA), caches warm from call 2, no baseline
set -u; . .devscripts/prelude.sh
export TORCHINDUCTOR_CACHE_DIR=$PWD/.egbcache/inductor TRITON_CACHE_DIR=$PWD/.egbcache/triton
ls -d .egbcache/inductor >> $OUT/steps.txt 2>&1
step spec-compiled 0 $ALL --egbench-runtime compiled benchmarks/test_acceptance.py -k "llava" --egbench-rounds 1 --egbench-warmup 0 --egbench-baseline-dir=/tmp/empty
cat $OUT/steps.txt
grep -h "passed\|failed\|exit status\|^FAILED\|compiled .* in \|c = \|alpha\|speculative_g\|target_decode\|draft_decode" $OUT/spec-compiled.log | cut -c1-250 | tail -40
cd $OUT && tar czf s15-call4.tar.gz *.log *.json && rm -f *.log *.json

