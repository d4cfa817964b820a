import sys, time, torch
sys.path.insert(0, ".")
from pytest_egbench.models.llama import dummy_llama
from pytest_egbench.models.generation import decode, prefill
from pytest_egbench.timing import SlowdownInjector, StageTimer, clocks_for
dev = torch.device("cuda")
model = dummy_llama("7b", "nf4", dev)
prompt = torch.randint(3, 32000, (1, 637)).to(dev)
dc, hc = clocks_for(dev)
for sd in ({}, {"decode": 0.1}, {"decode": 0.5}, {"prefill": 0.1}):
    inj = SlowdownInjector(sd, dev) if sd else None
    t = StageTimer(dc, hc, rounds=6, warmup=2, stage_hook=inj)
    for rnd in t.rounds():
        with rnd.stage("prefill"):
            f, c = prefill(model, input_ids=prompt)
        with rnd.stage("decode"):
            decode(model, f, c, 7)
    r = t.results()
    print(sd, {k: [round(v / 1e6, 2) for v in vs] for k, vs in r.steady.items()}, "calib", {k: [round(v / 1e6, 1) for v in vs] for k, vs in (inj._calibration.items() if inj else [])}, "cyc/ns", inj and inj._cycles_per_ns, flush=True)
