"""Build a model without allocating its weights, then give every weight its value on the target
device, quantising the LLaMA decoder's Linear layers there (gpt-fast style: meta first, then
fill).

:func:`build_empty` constructs a module with every parameter on the ``meta`` device (no memory,
no initialisation work) while buffers (rotary frequencies, position ids) are computed for real on
the target device. :func:`materialise` then walks the modules once: each parameter is created on
the device from a :class:`WeightSource` (seeded random values for dummy weights, or checkpoint
tensors), and each Linear layer of a ``LlamaDecoderLayer`` becomes a bitsandbytes ``Linear4bit``
(NF4) or ``Linear8bitLt`` (int8) whose weight is quantised on the device right after it is made.
At no point does a weight pass through host memory (checkpoint tensors excepted: they come from
a file), and at most one full-precision Linear weight exists at a time beside the quantised ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar, cast

import torch
from torch import nn

from .quant import QUANTISED_BLOCKS, QuantSpec

#: A module type that :func:`build_empty` and :func:`materialise` hand back as they got it.
ModuleT = TypeVar("ModuleT", bound=nn.Module)

#: Standard deviation of dummy weights (transformers' ``initializer_range`` for LLaMA and CLIP).
INIT_STD = 0.02


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Inside: every ``nn.Parameter`` a module registers is moved to ``meta`` at once."""
    register = nn.Module.register_parameter

    def register_on_meta(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(self, name, param)

    nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


def build_empty(factory: Callable[[], ModuleT], device: torch.device | str) -> ModuleT:
    """``factory()`` with every parameter on ``meta`` and every buffer made on ``device``.

    Initialisation code that runs inside ``factory`` touches meta tensors only, so it costs
    nothing. The result is in eval mode.
    """
    with torch.device(device), _parameters_on_meta():
        model = factory()
    return model.eval()


class WeightSource(Protocol):
    """Gives the value of one parameter, on ``device``, in ``dtype``."""

    def __call__(self, name: str, module: nn.Module, meta: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor: ...


class RandomWeights:
    """Seeded dummy weights made on the device: normal(0, 0.02) for weights and embeddings, ones
    for normalisation scales, zeros for biases (the distributions transformers initialises LLaMA
    and CLIP with). The same ``seed`` on the same device gives the same weights."""

    def __init__(self, seed: int = 0, std: float = INIT_STD) -> None:
        self.seed = seed
        self.std = std
        self._generators: dict[torch.device, torch.Generator] = {}

    def __call__(self, name: str, module: nn.Module, meta: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        leaf = name.rsplit(".", 1)[-1]
        is_norm = "norm" in type(module).__name__.lower()
        if leaf == "bias":
            return torch.zeros(meta.shape, device=device, dtype=dtype)
        if is_norm:
            return torch.ones(meta.shape, device=device, dtype=dtype)
        gen = self._generators.get(device)
        if gen is None:
            gen = self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return torch.empty(meta.shape, device=device, dtype=dtype).normal_(0.0, self.std, generator=gen)


class TensorWeights:
    """Weights from a mapping ``parameter name -> tensor`` (a loaded checkpoint), moved to the
    device and dtype as each is needed. Raises ``KeyError`` naming a parameter it lacks."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def __call__(self, name: str, module: nn.Module, meta: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        value = self.tensors[name]
        if tuple(value.shape) != tuple(meta.shape):
            raise ValueError(f"{name}: checkpoint shape {tuple(value.shape)} != model shape {tuple(meta.shape)}")
        return value.to(device=device, dtype=dtype)


def quantised_linear_names(model: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` modules inside the LLaMA decoder layers: the ones
    :func:`materialise` quantises (see :mod:`.quant`)."""
    blocks = [n for n, m in model.named_modules() if type(m).__name__ in QUANTISED_BLOCKS]
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and any(n.startswith(b + ".") for b in blocks)]


def _bnb_linear(linear: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None, config: Any, device: torch.device) -> nn.Module:
    """A bitsandbytes Linear replacing ``linear``, its ``weight`` (on ``device``) quantised there
    as the ``BitsAndBytesConfig`` ``config`` says (4-bit or 8-bit)."""
    import bitsandbytes as bnb

    new: nn.Module
    if config.load_in_4bit:
        with torch.device("meta"):
            new4 = bnb.nn.Linear4bit(
                linear.in_features,
                linear.out_features,
                bias=bias is not None,
                compute_dtype=config.bnb_4bit_compute_dtype,
                compress_statistics=config.bnb_4bit_use_double_quant,
                quant_type=config.bnb_4bit_quant_type,
            )
        meta_weight = cast("bnb.nn.Params4bit", new4.weight)  # a Params4bit, typed as the Tensor of nn.Linear
        param = bnb.nn.Params4bit(
            weight, requires_grad=False, compress_statistics=meta_weight.compress_statistics, quant_type=meta_weight.quant_type, module=new4
        )
        # not yet quantised: .to() quantises on the device
        # bitsandbytes types Params4bit.to's self as an nn.Module: call it untyped, so that mypy
        # agrees with and without bitsandbytes installed
        new4.weight = cast(Any, param).to(device)
        new = new4
    else:
        with torch.device("meta"):
            new8 = bnb.nn.Linear8bitLt(
                linear.in_features, linear.out_features, bias=bias is not None, has_fp16_weights=False, threshold=config.llm_int8_threshold
            )
        cb, scb, _ = bnb.functional.int8_vectorwise_quant(weight.to(torch.float16))
        new8.weight = bnb.nn.Int8Params(cb, requires_grad=False, has_fp16_weights=False, CB=cb, SCB=scb)
        new = new8
    if bias is not None:
        new.bias = nn.Parameter(bias, requires_grad=False)
    return new


@torch.no_grad()
def materialise(model: ModuleT, device: torch.device | str, quant: QuantSpec, source: WeightSource) -> ModuleT:
    """Give every meta parameter of ``model`` its value on ``device``; quantise as it goes.

    Parameters become ``quant.compute_dtype`` tensors from ``source``; the Linear layers listed by
    :func:`quantised_linear_names` become bitsandbytes layers when ``quant`` is nf4 or int8.
    Parameters shared between modules stay shared. ``device`` ``meta`` returns ``model`` as it is
    (shapes only, for counting). Returns ``model`` (changed in place).
    """
    device = torch.device(device)
    if device.type == "meta":
        return model
    dtype = quant.compute_dtype
    to_quantise = set(quantised_linear_names(model)) if quant.quantised else set()
    config = quant.bnb_config()
    done: dict[int, nn.Parameter] = {}
    for module_name, module in list(model.named_modules()):
        prefix = f"{module_name}." if module_name else ""
        if module_name in to_quantise:
            weight = source(prefix + "weight", module, module.weight, device, dtype)
            bias = None if module.bias is None else source(prefix + "bias", module, module.bias, device, dtype)
            parent_name, _, child = module_name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, _bnb_linear(module, weight, bias, config, device))
            del weight, bias
            continue
        for pname, param in list(module.named_parameters(recurse=False)):
            if id(param) not in done:
                value = source(prefix + pname, module, param, device, dtype) if param.device.type == "meta" else param.to(device, dtype)
                done[id(param)] = nn.Parameter(value, requires_grad=False)
            setattr(module, pname, done[id(param)])
    return model
