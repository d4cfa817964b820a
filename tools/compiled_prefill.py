"""What moves the compiled prefill: one CUDA-graph replay of the 7B LM's prompt, timed replay by
replay beside the GPU's clock and power (issue: compiled runtime, "prefill moves by 3 % or less
between leases; if not, say what moves it, measured").

In the stage suite the compiled NF4 prefill of one prompt length sat on two levels, about 27.0 and
29.5 ms, switching between rounds of one benchmark and between benchmarks of one process, while the
decode step moved by 0.3 % at most (docs/measurements/h200-x2-session12.md). This script builds
``dummy_llama(PRESET, QUANT)``, prepares :class:`pytest_egbench.models.runtime.CompiledLM` on a
637-token prompt and times ``--replays`` prefills with CUDA events in four conditions, interleaved
in blocks so that a drift of the machine shows in all of them:

* ``back-to-back``: one prefill after the other;
* ``after-idle``: the device idle for ``--idle-ms`` before each (clocks may drop when idle);
* ``after-eager``: about a hundred small eager kernels before each (what a benchmark's vision
  tower and prompt splicing queue before the prefill);
* ``fresh-input``: the prompt embeddings made outside inference mode (the adapters' path: the
  runtime copies them first).

After every prefill NVML is read (SM clock, power, clock-event reasons), and ``--profile`` replays
are profiled with ``torch.profiler``: the sum of their kernels' GPU time against the replay's
span tells a slower GPU (kernels longer) from gaps between kernels, and the gaps are summed by
the kernel they follow. Last, a CUDA graph of as many one-element kernels as the prefill has is
replayed ``--replays`` times: what one graph node costs the device with no work in it. And the
host's own time in a compiled prefill call and a decode step (the call's wall time with the GPU's
work queued, not awaited): how close the host is to the GPU's time a step. Writes
``OUT/compiled-prefill.json`` and prints a summary.

    python tools/compiled_prefill.py --out /tmp/cp --quant nf4
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

CONDITIONS = ("back-to-back", "after-idle", "after-eager", "fresh-input")


def _gpu_ms(torch, work) -> float:
    """Milliseconds from a CUDA event recorded before ``work()`` to one recorded after it (the
    device's time for what ``work`` queued, host gaps in between included), synchronised."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    work()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop)


def _summary(values: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {"n": len(values), "median": statistics.median(values), "q1": qs[0], "q3": qs[2], "min": min(values), "max": max(values)}


def run(preset: str, quant: str, replays: int, block: int, idle_ms: float, profile: int) -> dict:
    import torch

    from pytest_egbench.machine import gpu_state, nvml_id
    from pytest_egbench.models.llama import dummy_llama
    from pytest_egbench.models.runtime import CompiledLM

    device = torch.device("cuda")
    gpu = nvml_id(device)
    model = dummy_llama(preset, quant, device)
    lm = CompiledLM(model)
    prompt = 637
    compile_s = lm.prepare(prompt, 16)
    ids = torch.randint(3, model.config.vocab_size, (1, prompt), device=device)
    with torch.inference_mode():
        embeds = model.get_input_embeddings()(ids)
    fresh = model.get_input_embeddings()(ids).detach()  # not an inference tensor: the adapters' case
    small = torch.randn(256, 256, device=device, dtype=torch.bfloat16)

    def one(condition: str) -> float:
        if condition == "after-idle":
            torch.cuda.synchronize()
            time.sleep(idle_ms / 1e3)
        elif condition == "after-eager":
            x = small
            for _ in range(100):
                x = torch.tanh(x @ small)
        return _gpu_ms(torch, lambda: lm.prefill(inputs_embeds=fresh if condition == "fresh-input" else embeds))

    rows: list[dict] = []
    done = 0
    while done < replays:
        for condition in CONDITIONS:
            for _ in range(block):
                ms = one(condition)
                state = gpu_state(gpu) or {}
                rows.append(
                    {"condition": condition, "ms": ms, "sm_mhz": state.get("sm_mhz"), "power_w": state.get("power_w"), "slowdown": state.get("slowdown")}
                )
        done += block
    by_condition = {c: _summary([r["ms"] for r in rows if r["condition"] == c]) for c in CONDITIONS}
    clocks = sorted({r["sm_mhz"] for r in rows if r["sm_mhz"] is not None})
    slowdowns = sorted({s for r in rows for s in (r["slowdown"] or [])})

    profiled = []
    for _ in range(profile):
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            event_ms = _gpu_ms(torch, lambda: lm.prefill(inputs_embeds=embeds))
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        attr = "device_time_total" if hasattr(kernels[0], "device_time_total") else "cuda_time_total"
        row = {"event_ms": event_ms, "kernel_ms": sum(getattr(e, attr) for e in kernels) / 1e3, "kernels": len(kernels)}
        profiled.append(row | _gaps(kernels))
    nodes = _graph_node_cost(torch, max(p["kernels"] for p in profiled) if profiled else 1353, replays)

    # the host's own time in a compiled call: the wall time until the call returns, the device
    # synchronised before and not after (the GPU's work is queued, not waited for); a decode step's
    # as the call of 16 steps over 16 (the queue holds them without blocking)
    host_prefill, host_step = [], []
    for _ in range(20):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        token, cache, _ = lm.prefill(inputs_embeds=embeds)
        host_prefill.append(1e3 * (time.perf_counter() - t0))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        lm.decode(token, cache, 16)
        host_step.append(1e3 * (time.perf_counter() - t0) / 16)
    torch.cuda.synchronize()
    return {
        "preset": preset,
        "quant": quant,
        "prompt_tokens": prompt,
        "compile_s": compile_s,
        "gpu": str(gpu),
        "by_condition": by_condition,
        "sm_clocks_seen_mhz": clocks,
        "slowdown_reasons_seen": slowdowns,
        "replays": rows,
        "profiled": profiled,
        "graph_nodes": nodes,
        "host_ms": {"prefill_call": _summary(host_prefill), "decode_step": _summary(host_step)},
    }


def _gaps(kernels: list) -> dict:
    """The device's idle time between consecutive kernels of one profiled replay (start of one minus
    end of the one before, in us, from the profiler's device time ranges), summarised, and the
    kernels after which it idled longest, by name (summed over the replay)."""
    spans = sorted((e.time_range.start, e.time_range.end, e.name) for e in kernels)
    gaps = [(max(0.0, b[0] - a[1]), a[2]) for a, b in zip(spans, spans[1:])]
    if not gaps:
        return {}
    after: dict[str, list[float]] = {}
    for gap, name in gaps:
        after.setdefault(name[:60], []).append(gap)
    top = sorted(after.items(), key=lambda kv: -sum(kv[1]))[:8]
    return {
        "gap_us": _summary([g for g, _ in gaps]),
        "gap_total_ms": sum(g for g, _ in gaps) / 1e3,
        "gap_after": [{"kernel": k, "n": len(v), "total_ms": sum(v) / 1e3, "median_us": statistics.median(v)} for k, v in top],
    }


def _graph_node_cost(torch, nodes: int, replays: int) -> dict:
    """The device's own cost of a CUDA-graph node: a graph of ``nodes`` one-element kernels, each
    depending on the one before (as the prefill's kernels do), replayed ``replays`` times with CUDA
    events; the replay's time over ``nodes`` is what one node costs with (next to) no work in it."""
    x = torch.zeros(1, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            x.add_(1)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(nodes):
            x.add_(1)
    times = [_gpu_ms(torch, graph.replay) for _ in range(replays)]
    return {"nodes": nodes, "replay_ms": _summary(times), "per_node_us": _summary([1e3 * t / nodes for t in times]), "replays_ms": times}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="7b")
    parser.add_argument("--quant", default="nf4")
    parser.add_argument("--replays", type=int, default=200, help="prefills per condition")
    parser.add_argument("--block", type=int, default=10, help="consecutive prefills of one condition")
    parser.add_argument("--idle-ms", type=float, default=200.0)
    parser.add_argument("--profile", type=int, default=20, help="profiled prefills (back-to-back)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    r = run(args.preset, args.quant, args.replays, args.block, args.idle_ms, args.profile)
    (args.out / "compiled-prefill.json").write_text(json.dumps(r, indent=1) + "\n")
    print(f"{r['preset']} {r['quant']} compiled prefill of {r['prompt_tokens']} tokens, compile {r['compile_s']:.1f} s, GPU {r['gpu']}")
    for c, s in r["by_condition"].items():
        print(f"  {c:13s} n={s['n']:4d} median {s['median']:.3f} ms [IQR {s['q1']:.3f}-{s['q3']:.3f}] range {s['min']:.3f}-{s['max']:.3f}")
    print(f"  SM clocks seen: {r['sm_clocks_seen_mhz']} MHz; clock-event reasons seen: {r['slowdown_reasons_seen'] or 'none'}")
    if r["profiled"]:
        ev = [p["event_ms"] for p in r["profiled"]]
        kn = [p["kernel_ms"] for p in r["profiled"]]
        print(
            f"  profiled x{len(ev)}: replay {min(ev):.3f}-{max(ev):.3f} ms, kernels' GPU time {min(kn):.3f}-{max(kn):.3f} ms, {r['profiled'][0]['kernels']} kernels"
        )
        gaps = [p for p in r["profiled"] if "gap_us" in p]
        if gaps:
            g = gaps[len(gaps) // 2]
            print(
                f"  idle between kernels (one profiled replay): {g['gap_total_ms']:.3f} ms in all, gap median {g['gap_us']['median']:.2f} us [IQR {g['gap_us']['q1']:.2f}-{g['gap_us']['q3']:.2f}], max {g['gap_us']['max']:.1f} us"
            )
            for a in g["gap_after"]:
                print(f"    after {a['kernel']}: {a['n']} gaps, {a['total_ms']:.3f} ms, median {a['median_us']:.2f} us")
    h = r["host_ms"]
    print(
        f"  host time of a call (until it returns, GPU not awaited): prefill {h['prefill_call']['median']:.3f} ms "
        f"[IQR {h['prefill_call']['q1']:.3f}-{h['prefill_call']['q3']:.3f}], decode step {h['decode_step']['median']:.3f} ms "
        f"[IQR {h['decode_step']['q1']:.3f}-{h['decode_step']['q3']:.3f}]"
    )
    n = r["graph_nodes"]
    print(
        f"  a graph of {n['nodes']} one-element kernels: replay median {n['replay_ms']['median']:.3f} ms [IQR {n['replay_ms']['q1']:.3f}-{n['replay_ms']['q3']:.3f}], "
        f"{n['per_node_us']['median']:.2f} us a node (range {n['per_node_us']['min']:.2f}-{n['per_node_us']['max']:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
