"""Where the compiled decode step's time goes: the 7B LM in one runtime configuration, timed and
profiled (issue: compiled runtime, "push the compiled path").

For each ``--config`` (``default``: the ``compiled`` runtime, torch.compile's defaults; ``cdt``: the
``compiled-tuned`` runtime, inductor's coordinate-descent tuning of its Triton kernels, as gpt-fast
sets it) the script builds ``dummy_llama(PRESET, QUANT)``,
prepares :class:`pytest_egbench.models.runtime.CompiledLM` on a 637-token prompt (compile seconds),
times ``--steps`` decode steps with CUDA events over ``--repeats`` repeats (ms per token, median
and range), and profiles one repeat with ``torch.profiler``: GPU kernel time per token against
wall time per token (the difference is the device idling between kernels) and the ten kernels
that take the most GPU time. Writes ``OUT/compiled-decode.json`` and prints a table.

    python tools/compiled_decode.py --out /tmp/cd --quant bf16 --config default --config cdt
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(config: str, preset: str, quant: str, steps: int, repeats: int) -> dict:
    import torch

    from pytest_egbench.models.llama import dummy_llama
    from pytest_egbench.models.memory import kv_bytes_per_token
    from pytest_egbench.models.runtime import CompiledLM
    from pytest_egbench.roofline import decode_bytes_per_token

    torch._dynamo.reset()
    device = torch.device("cuda")
    model = dummy_llama(preset, quant, device)
    lm = CompiledLM(model, tuned=config == "cdt")
    prompt = 637
    compile_s = lm.prepare(prompt, steps)
    ids = torch.randint(3, model.config.vocab_size, (1, prompt), device=device)
    per_token = []
    for _ in range(repeats):
        first, cache, _ = lm.prefill(input_ids=ids)
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        lm.decode(first, cache, steps)
        stop.record()
        stop.synchronize()
        per_token.append(start.elapsed_time(stop) / steps)
    first, cache, _ = lm.prefill(input_ids=ids)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA, torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        lm.decode(first, cache, steps)
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) * 1e3 / steps
    kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    attr = "device_time_total" if hasattr(kernels[0], "device_time_total") else "cuda_time_total"
    gpu_ms = sum(getattr(e, attr) for e in kernels) / 1e3 / steps
    top = sorted(kernels, key=lambda e: getattr(e, attr), reverse=True)[:10]
    nbytes = decode_bytes_per_token(model, kv_bytes_per_token(model.config, model.dtype), lm.max_cache_len)
    median = statistics.median(per_token)
    return {
        "config": config,
        "preset": preset,
        "quant": quant,
        "compile_s": compile_s,
        "ms_per_token": per_token,
        "median_ms": median,
        "bytes_per_token": nbytes,
        "achieved_GBps": nbytes / (median / 1e3) / 1e9,
        "profiled_wall_ms_per_token": wall,
        "profiled_gpu_kernel_ms_per_token": gpu_ms,
        "top_kernels": [{"name": e.key[:120], "ms_per_token": getattr(e, attr) / 1e3 / steps, "calls_per_token": e.count / steps} for e in top],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="7b")
    parser.add_argument("--quant", default="bf16")
    parser.add_argument("--config", action="append", choices=["default", "cdt"], default=[])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run(c, args.preset, args.quant, args.steps, args.repeats) for c in args.config or ["default"]]
    (args.out / "compiled-decode.json").write_text(json.dumps(results, indent=1) + "\n")
    for r in results:
        print(
            f"{r['preset']} {r['quant']} {r['config']}: compile {r['compile_s']:.1f} s, {r['median_ms']:.3f} ms/token "
            f"[{min(r['ms_per_token']):.3f}-{max(r['ms_per_token']):.3f}], {r['achieved_GBps']:.0f} GB/s; profiled: "
            f"{r['profiled_gpu_kernel_ms_per_token']:.3f} ms of kernels in {r['profiled_wall_ms_per_token']:.3f} ms a token"
        )
        for k in r["top_kernels"]:
            print(f"   {k['ms_per_token']:.3f} ms/token  x{k['calls_per_token']:.0f}  {k['name']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
