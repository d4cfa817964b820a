"""Metrics beyond stage timings: speculative acceptance by verification (:mod:`.speculative`),
output agreement (:mod:`.agreement`), predicted speed-up (:mod:`.speedup`) and parallel prefill
(:mod:`.parallel`). docs/design.md#metrics defines the terms.

:mod:`.agreement` and :mod:`.speedup` are standard library only; the others import torch inside
their functions, so importing this package never loads torch.
"""
