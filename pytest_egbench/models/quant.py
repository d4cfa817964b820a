"""Weight formats: what ``--egbench-quant`` means for a model, as one :class:`QuantSpec`.

``nf4`` is the origin reports' setting (docs/design.md#tokenizer-and-quantisation): bitsandbytes
4-bit NF4 with double quantisation and bfloat16 compute. ``int8`` is bitsandbytes LLM.int8()
(outlier threshold 6.0, transformers' default) with float16 compute. ``bf16``, ``fp16`` and
``fp32`` are unquantised.

Only the Linear layers of the LLaMA decoder are quantised; the vision tower, projectors,
EventGPT's feature adaptor, embeddings and ``lm_head`` stay in the compute dtype. That is what the
origin codebases load (LLaVA's builder loads the CLIP tower on its own, after quantisation) and
what :meth:`QuantSpec.bnb_config` asks transformers to do for real checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: The weight formats (``--egbench-quant``); ``fp32`` is for CPU runs, NF4/int8 need bitsandbytes'
#: CUDA kernels.
QUANTS: tuple[str, ...] = ("nf4", "int8", "bf16", "fp16", "fp32")
_COMPUTE = {"nf4": "bfloat16", "int8": "float16", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
#: nn.Linear layers inside modules of these classes are the ones quantised.
#: (LLaMA; the Qwen2 LMs of the generic adapter's Qwen2-VL, Qwen2.5-VL and LLaVA-OneVision.)
QUANTISED_BLOCKS = ("LlamaDecoderLayer", "Qwen2DecoderLayer", "Qwen2VLDecoderLayer", "Qwen2_5_VLDecoderLayer")


@dataclass(frozen=True)
class QuantSpec:
    """A weight format: ``name`` is one of ``nf4``, ``int8``, ``bf16``, ``fp16``, ``fp32``.

    Raises ``ValueError`` for any other name.
    """

    name: str

    def __post_init__(self) -> None:
        if self.name not in QUANTS:
            raise ValueError(f"unknown weight format {self.name!r}: choose from {', '.join(QUANTS)}")

    @property
    def quantised(self) -> bool:
        return self.name in ("nf4", "int8")

    @property
    def compute_dtype(self) -> Any:
        """``torch.dtype`` of activations and of every unquantised weight."""
        import torch

        return getattr(torch, _COMPUTE[self.name])

    def bnb_config(self, skip_modules: Sequence[str] = ("lm_head",)) -> Any:
        """``transformers.BitsAndBytesConfig`` for ``nf4``/``int8`` (``None`` when unquantised).

        ``skip_modules``: module names left unquantised (``llm_int8_skip_modules``; it replaces
        transformers' default list, so keep ``lm_head`` in it).
        """
        if not self.quantised:
            return None
        from transformers import BitsAndBytesConfig

        if self.name == "nf4":
            return BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=self.compute_dtype,
                llm_int8_skip_modules=list(skip_modules),
            )
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0, llm_int8_skip_modules=list(skip_modules))
