"""The adapter interface every model implements: one call per stage (docs/design.md#stages).

``load(spec)`` builds the model once; then per sample

1. (stage 1, load, belongs to the data layer: it yields a :class:`VisualInput` of decoded arrays)
2. ``preprocess(sample)`` -> :class:`Inputs` on the device (image processor, tokenisation, copy)
3. ``encode_vision(inputs)`` -> visual embeddings ``[V, hidden]`` in the LLM's embedding space
4. ``prefill(inputs, visual)`` -> :class:`PrefillState` (first token, KV cache); the visual
   embeddings of stage 3 are spliced into the prompt embeddings and enter the LM through
   ``inputs_embeds``: the vision tower never runs again here
5. ``decode(state, n)`` -> ``[1, n]`` tokens, one forward each, on the KV cache of stage 4

None of 3-5 synchronises with the device (no ``.item()``): a CUDA-event timer measures device
time. ``forward_whole(inputs)`` is the model's own single forward from pixels, kept for the test
that shows the split path computes the same thing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .memory import footprint_bytes, kv_bytes_per_token
from .quant import QuantSpec
from .runtime import LM, RUNTIMES, EagerLM, RuntimeUnsupportedError, lm_runtime
from .tokenization import DEFAULT_QUESTION, expand_placeholder, load_tokenizer


@dataclass(frozen=True, eq=False)
class VisualInput:
    """One input as the data layer decodes it: exactly the arrays the model family needs.

    ``events``: EventGPT's event frames ``[T, H, W, 3]`` uint8 RGB (T = 1 or 5 in the origin runs).
    ``video``: sampled video frames ``[N, H, W, 3]`` uint8 RGB (N = 8 for Video-LLaVA).
    ``images``: a sequence of ``[H, W, 3]`` uint8 RGB images (LLaVA-1.5: 1, or 8 as in the
    origin's "8 frames" run). ``question``: the user's text. ``id``: free label.
    """

    question: str = DEFAULT_QUESTION
    events: np.ndarray | None = None
    video: np.ndarray | None = None
    images: tuple[np.ndarray, ...] | list[np.ndarray] | None = None
    id: str = ""


@dataclass(frozen=True)
class InputKind:
    """What an adapter reads, declared once on the adapter (:attr:`ModelAdapter.input_kind`).

    ``need``: the part of a dataset sample stage 1 reads (a key of
    :data:`pytest_egbench.data.dataset.NEEDS`: ``events``, ``video`` or ``event_image``);
    ``field``: the :class:`VisualInput` field the adapter's :meth:`~ModelAdapter.frames` reads
    (``events``, ``video`` or ``images``); ``text``: what that is, for documentation.
    """

    name: str
    need: str
    field: str
    text: str


#: The input kinds an adapter may declare (:mod:`pytest_egbench.pipeline` loads each).
INPUT_KINDS: dict[str, InputKind] = {
    k.name: k
    for k in (
        InputKind(
            "event_stream", "events", "events", "raw events, rendered in preprocess into T event frames [T, H, W, 3] uint8 (equal event counts per frame)"
        ),
        InputKind("event_images", "event_image", "events", "the sample's pre-rendered event-frame PNGs, the first T, as [T, H, W, 3] uint8"),
        InputKind("video", "video", "video", "N video frames sampled uniformly, as one [N, H, W, 3] uint8 array"),
        InputKind("images", "video", "images", "N video frames sampled uniformly, as a list of N [H, W, 3] uint8 images"),
    )
}


def synthetic_sample(
    model: str, frames: int | None = None, *, height: int = 480, width: int = 640, seed: int = 0, question: str = DEFAULT_QUESTION
) -> VisualInput:
    """A deterministic stand-in for a real sample: seeded random uint8 RGB arrays of the shape
    ``model``'s adapter takes (``frames`` of them, default the adapter's
    :attr:`~ModelAdapter.default_frames`), 480 x 640 as the DSEC sensor and the bundled video, in
    the :class:`VisualInput` field of its :attr:`~ModelAdapter.input_kind`. Raises ``ValueError``
    for a model the registry does not know."""
    from .registry import adapter_class

    adapter = adapter_class(model)
    n = adapter.default_frames if frames is None else frames
    arrays = np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    field = INPUT_KINDS[adapter.input_kind].field
    value: Any = list(arrays) if field == "images" else arrays
    return VisualInput(question=question, id=f"synthetic-{seed}", **{field: value})


@dataclass(frozen=True)
class ModelSpec:
    """What to load: model ``name`` (a registered name: eventgpt, video_llava, llava, ...), size ``preset`` (tiny, 7b),
    weight format ``quant`` (nf4, int8, bf16, fp16, fp32), ``device`` (``meta`` builds shapes
    only), a local ``checkpoint`` folder (``None``: seeded dummy weights) and the dummy ``seed``."""

    name: str
    preset: str = "tiny"
    quant: str = "fp32"
    device: str = "cpu"
    checkpoint: Path | None = None
    seed: int = 0

    @property
    def quant_spec(self) -> QuantSpec:
        return QuantSpec(self.quant)


@dataclass
class Inputs:
    """Preprocessed inputs on the device.

    ``input_ids`` ``[1, L]`` int64: the whole prompt, each visual token a placeholder id;
    ``positions`` ``[V]`` int64: where in the prompt the visual embeddings go (ascending);
    ``pixel_values`` ``[F, 3, S, S]`` in the compute dtype (F frames or images, S the tower's
    size). ``prompt_tokens`` = L, the prefill length; ``visual_tokens`` = V.
    """

    input_ids: torch.Tensor
    positions: torch.Tensor
    pixel_values: torch.Tensor
    prompt_tokens: int
    visual_tokens: int


@dataclass
class PrefillState:
    """What prefill leaves for decode: ``token`` ``[1, 1]`` (the first generated token),
    ``cache`` (the filled ``DynamicCache``, grown by decode), ``logits`` ``[1, vocab]`` of the last
    prompt position, and the prompt length."""

    token: torch.Tensor
    cache: Any
    logits: torch.Tensor
    prompt_tokens: int


def check_frames(array: Any, what: str, ndim: int) -> np.ndarray:
    """``array`` as a uint8 RGB array of ``ndim`` dimensions (last one 3), or ``ValueError``
    naming ``what`` and what was wrong."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(array).__name__}")
    shape = "[T, H, W, 3]" if ndim == 4 else "[H, W, 3]"
    if array.ndim != ndim or array.shape[-1] != 3 or array.dtype != np.uint8 or 0 in array.shape:
        raise ValueError(f"{what} must be a non-empty {shape} uint8 RGB array, got shape {array.shape} {array.dtype}")
    return array


def splice_visual(embeds: torch.Tensor, positions: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    """``embeds`` ``[1, L, hidden]`` with rows ``positions`` ``[V]`` replaced by ``visual``
    ``[V, hidden]`` (a new tensor). Raises ``ValueError`` when the counts differ."""
    if visual.shape[0] != positions.shape[0]:
        raise ValueError(f"{visual.shape[0]} visual embeddings for {positions.shape[0]} placeholder positions")
    return embeds.index_copy(1, positions, visual.to(embeds.dtype).unsqueeze(0))


def clip_image_processor(size: int) -> Any:
    """transformers' CLIP image processor for ``size`` px: resize the shortest edge to ``size``
    (bicubic), centre crop ``size`` x ``size``, scale to [0, 1], normalise with CLIP's mean and
    std. The settings of openai/clip-vit-large-patch14-336 (EventGPT, LLaVA-1.5) at 336 and of
    Video-LLaVA-hf's ``VideoLlavaImageProcessor`` at 224. Built locally, no hub. Uses the PIL
    backend when torchvision is missing (transformers would fall back to it with a warning)."""
    import importlib.util

    import transformers

    cls: type[transformers.CLIPImageProcessor | transformers.CLIPImageProcessorPil]
    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "CLIPImageProcessorPil"):
        cls = transformers.CLIPImageProcessorPil
    else:
        cls = transformers.CLIPImageProcessor
    return cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


class ModelAdapter(ABC):
    """One multimodal model behind the five-stage interface (see the module docstring).

    Subclasses declare ``name``, ``placeholder`` (the prompt's visual marker), ``input_kind``
    (what they read: a key of :data:`INPUT_KINDS`) and ``default_frames`` (visual inputs per
    sample when a benchmark does not say), and implement :meth:`load`, :meth:`prompt`,
    :meth:`frames`, :meth:`visual_token_counts`, :meth:`encode_vision` and :meth:`forward_whole`.
    ``lm`` is the causal LM that prefill and decode run (it accepts ``inputs_embeds`` and
    ``input_ids``). The interface is documented in docs/adapters.md.
    """

    name: ClassVar[str]
    placeholder: ClassVar[str]
    input_kind: ClassVar[str]
    default_frames: ClassVar[int]
    #: the runtimes (:data:`.runtime.RUNTIMES`) this adapter's prefill and decode can run in, and
    #: why not the others (said when a run asks for one of them)
    runtimes: ClassVar[tuple[str, ...]] = RUNTIMES
    runtimes_note: ClassVar[str] = ""

    @classmethod
    def check_declarations(cls) -> None:
        """Raise ``ValueError`` naming the class when a declaration is missing or wrong:
        ``name`` and ``placeholder`` non-empty strings, ``input_kind`` a key of
        :data:`INPUT_KINDS`, ``default_frames`` a positive int."""
        where = f"{cls.__module__}.{cls.__qualname__}"
        for attr in ("name", "placeholder"):
            if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr):
                raise ValueError(f"{where}.{attr} must be a non-empty string")
        if getattr(cls, "input_kind", None) not in INPUT_KINDS:
            raise ValueError(f"{where}.input_kind is {getattr(cls, 'input_kind', None)!r}: choose from {', '.join(INPUT_KINDS)}")
        frames = getattr(cls, "default_frames", None)
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
            raise ValueError(f"{where}.default_frames is {frames!r}: must be a positive int")

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, *, lm: torch.nn.Module, text_config: Any, vision_config: Any, fill_id: int) -> None:
        self.model = model
        self.spec = spec
        self.lm = lm
        self.text_config = text_config
        self.vision_config = vision_config
        self.device = torch.device(spec.device)
        self.dtype = spec.quant_spec.compute_dtype
        self.fill_id = fill_id
        self.tokenizer = load_tokenizer()
        self.image_processor = clip_image_processor(vision_config.image_size)
        #: seconds :meth:`load` took (set by it; None when built otherwise)
        self.load_seconds: float | None = None
        #: how :meth:`prefill` and :meth:`decode` run the LM (:meth:`use_runtime`)
        self.runtime: LM = EagerLM(lm)

    def use_runtime(self, name: str) -> None:
        """Run :meth:`prefill` and :meth:`decode` in runtime ``name`` (:data:`.runtime.RUNTIMES`):
        eager forwards on a growing cache, or a static cache and a compiled decode step
        (:mod:`.runtime`). ``ValueError`` for an unknown name;
        :class:`.runtime.RuntimeUnsupportedError` (:meth:`runtime_unsupported`) for a runtime the
        adapter does not declare in :attr:`runtimes`."""
        reason = self.runtime_unsupported(name)
        if reason:
            raise RuntimeUnsupportedError(reason)
        self.runtime = lm_runtime(name, self.lm)

    @classmethod
    def runtime_unsupported(cls, name: str) -> str | None:
        """Why this adapter cannot run in the known runtime ``name`` (``None`` when it can, or
        when ``name`` is not a runtime at all): checked before loading a model for nothing."""
        if name not in RUNTIMES or name in cls.runtimes:
            return None
        return f"{cls.name}: {cls.runtimes_note or 'runs only the runtimes ' + ', '.join(cls.runtimes)}"

    # ------------------------------------------------------------------ per model
    @classmethod
    @abstractmethod
    def load(cls, spec: ModelSpec) -> ModelAdapter:
        """Build (dummy) or read (``spec.checkpoint``) the model on ``spec.device``, quantised
        as ``spec.quant`` says."""

    @abstractmethod
    def prompt(self, sample: VisualInput) -> str:
        """The prompt text with one :attr:`placeholder` per visual input."""

    @abstractmethod
    def frames(self, sample: VisualInput) -> list[np.ndarray]:
        """The ``[H, W, 3]`` uint8 arrays to run through the image processor; ``ValueError``
        when the sample lacks what the model needs."""

    @abstractmethod
    def visual_token_counts(self, n_frames: int) -> list[int]:
        """Visual tokens per placeholder, for ``n_frames`` processed frames."""

    @abstractmethod
    def encode_vision(self, inputs: Inputs) -> torch.Tensor:
        """Stage 3: ``inputs.pixel_values`` -> ``[V, hidden]`` embeddings, in prompt order."""

    @abstractmethod
    def forward_whole(self, inputs: Inputs) -> tuple[torch.Tensor, Any]:
        """The model's own single forward from pixels: ``(last-position logits [1, vocab], KV
        cache)``. For tests; not a benchmark stage."""

    # ------------------------------------------------------------------ shared stages
    def preprocess(self, sample: VisualInput) -> Inputs:
        """Stage 2: image processor, tokenisation with the visual placeholders expanded, copy to
        the device (pixels in the compute dtype). Raises ``ValueError`` for a sample without the
        arrays this model needs, or with arrays of the wrong shape or dtype."""
        frames = self.frames(sample)
        pixels = self.image_processor(images=frames, return_tensors="pt")["pixel_values"]
        counts = self.visual_token_counts(len(frames))
        ids, positions = expand_placeholder(self.tokenizer, self.prompt(sample), self.placeholder, counts, self.fill_id)
        return Inputs(
            input_ids=torch.tensor([ids], dtype=torch.long).to(self.device),
            positions=torch.tensor(positions, dtype=torch.long).to(self.device),
            pixel_values=pixels.to(self.device, self.dtype),
            prompt_tokens=len(ids),
            visual_tokens=len(positions),
        )

    def embed_prompt(self, inputs: Inputs, visual: torch.Tensor) -> torch.Tensor:
        """``[1, L, hidden]``: the prompt's token embeddings with ``visual`` ``[V, hidden]`` written
        at ``inputs.positions``. Raises ``ValueError`` when V differs from the placeholders."""
        embed = self.lm.get_input_embeddings()  # type: ignore[operator]  # a transformers method, typed Tensor | Module by nn.Module.__getattr__
        return splice_visual(embed(inputs.input_ids), inputs.positions, visual)

    def prefill(self, inputs: Inputs, visual: torch.Tensor) -> PrefillState:
        """Stage 4: prompt embeddings with stage 3's ``visual`` spliced in, one LM forward through
        ``inputs_embeds``; first token chosen greedily. No host synchronisation."""
        token, cache, logits = self.runtime.prefill(inputs_embeds=self.embed_prompt(inputs, visual))
        return PrefillState(token=token, cache=cache, logits=logits, prompt_tokens=inputs.prompt_tokens)

    def decode(self, state: PrefillState, n: int) -> torch.Tensor:
        """Stage 5: ``n`` greedy tokens ``[1, n]``, one forward each on ``state.cache`` (which
        grows by ``n``); no early stop at EOS. ``state.token`` becomes the last token."""
        produced = self.runtime.decode(state.token, state.cache, n)
        if n:
            state.token = produced[:, -1:]
        return produced

    # ------------------------------------------------------------------ facts
    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes per token of this model's LM in its compute dtype (:mod:`.memory`)."""
        return kv_bytes_per_token(self.text_config, self.dtype)

    def footprint_bytes(self) -> int:
        """Bytes of the model's weights and buffers as loaded (quantised where it is)."""
        return footprint_bytes(self.model)

    @property
    def patches(self) -> int:
        """Patch tokens per image of the vision tower, CLS not counted: ``(S / patch) ** 2``
        (576 at 336 px, 256 at 224 px for patch 14)."""
        return (self.vision_config.image_size // self.vision_config.patch_size) ** 2
