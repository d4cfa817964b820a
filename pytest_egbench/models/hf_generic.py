"""A generic adapter for ``transformers`` image-text-to-text models (issue 15): the Llava, LlavaNext,
LlavaOnevision, VideoLlava, Qwen2-VL and Qwen2.5-VL families, and any other
``AutoModelForImageTextToText`` whose vision tower can be found.

The stages run the model's own code, split only where the model itself exposes a seam:

* preprocess: the model's own processor class (``LlavaProcessor``, ``Qwen2VLProcessor``, ...),
  built offline from its image processor and a local tokenizer, or read from the checkpoint
  folder (``local_files_only``); it expands the visual placeholders and gives every tensor the
  model's forward takes (``image_sizes``, ``image_grid_thw``, ``mm_token_type_ids``, ...);
* vision: the model's ``get_image_features`` / ``get_video_features`` (tower and projector),
  timed beside the stage timer by :class:`VisionTimingHooks` (forward hooks on the tower and the
  projector, the origin scripts' VisionTimingHooks) which also count the calls;
* prefill: the model's own forward on the prompt embeddings with the visual features written at
  the placeholders (no pixels, so the tower cannot run again); families whose positions come
  from the token ids (Qwen's 3D M-RoPE) also get ``input_ids`` and the grid sizes;
* decode: :func:`.generation.decode` on the model.

A model whose tower cannot be found (vision folded into the forward, e.g. Fuyu's linear patch
embedding) is *not split*: its vision stage returns nothing and prefill runs the whole forward
from pixels; :attr:`GenericHFAdapter.vision_split` is ``False`` and :meth:`stage_note` says so,
for the table and ``extra_info``.

Loading: dummy weights from a config (:mod:`.hf_presets`, or the hand-written presets for
LLaVA-1.5 and Video-LLaVA) built on the meta device and filled on the target (:mod:`.weights`);
or a local checkpoint folder, safetensors only, ``trust_remote_code`` never.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from . import hf_presets, presets
from .base import Inputs, ModelAdapter, ModelSpec, PrefillState, VisualInput, check_frames, clip_image_processor, splice_visual
from .generation import cache_kwargs, output_cache, prefill_with_logits
from .llava import _features
from .runtime import LM, EagerLM
from .tokenization import DEFAULT_QUESTION, TOKENIZER_FILE, load_tokenizer
from .weights import RandomWeights, build_empty, materialise

#: Special tokens of the Qwen chat format and vision markers (Qwen2-VL's tokenizer).
QWEN_TOKENS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
#: Files of pickled weights; a checkpoint folder holding only these is refused.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass(frozen=True)
class Family:
    """How one ``model_type`` is driven: its model class, where its vision tower(s) and projector
    sit (attribute paths from the model), its prompt (``{visual}`` once per image or video,
    ``{question}``), the placeholder token and the config attribute holding its id, and whether
    prefill needs ``input_ids`` beside the embeddings (positions computed from the ids)."""

    model_class: str
    towers: tuple[str, ...]
    projector: str
    prompt: str
    visual: str
    image_token: str
    video_token: str
    token_attributes: tuple[str, str] = ("image_token_id", "video_token_id")
    ids_with_embeds: bool = False


_LLAVA_PROMPT = "USER: {visual}{question} ASSISTANT:"
_QWEN_PROMPT = "<|im_start|>user\n{visual}{question}<|im_end|>\n<|im_start|>assistant\n"
_LLAVA = Family("LlavaForConditionalGeneration", ("model.vision_tower",), "model.multi_modal_projector", _LLAVA_PROMPT, "{token}\n", "<image>", "<video>")
_QWEN2_VL = Family(
    "Qwen2VLForConditionalGeneration",
    ("model.visual",),
    "model.visual.merger",
    _QWEN_PROMPT,
    "<|vision_start|>{token}<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    ids_with_embeds=True,
)
FAMILIES: dict[str, Family] = {
    "llava": _LLAVA,
    # LLaVA-NeXT: LLaVA's layout, prompt and tokens; the any-res patches (pixel_values
    # [B, patches, 3, S, S] with image_sizes), their unpadding and newline rows are the model's
    # own get_image_features
    "llava_next": replace(_LLAVA, model_class="LlavaNextForConditionalGeneration"),
    "video_llava": replace(_LLAVA, model_class="VideoLlavaForConditionalGeneration", towers=("model.image_tower", "model.video_tower")),
    "llava_onevision": Family(
        "LlavaOnevisionForConditionalGeneration",
        ("model.vision_tower",),
        "model.multi_modal_projector",
        "<|im_start|>user {visual}{question}<|im_end|><|im_start|>assistant\n",
        "{token}\n",
        "<image>",
        "<video>",
        ("image_token_index", "video_token_index"),
    ),
    "qwen2_vl": _QWEN2_VL,
    # Qwen2.5-VL: Qwen2-VL's layout, prompt, tokens and 3D positions; its tower's windowed
    # attention (window_index over image_grid_thw) runs inside the model's own get_image_features
    "qwen2_5_vl": replace(_QWEN2_VL, model_class="Qwen2_5_VLForConditionalGeneration"),
}
#: Where an unknown family's tower and projector are looked for, in this order.
_TOWER_GUESSES = ("model.vision_tower", "model.visual", "model.vision_model", "vision_tower", "visual", "vision_model")
_PROJECTOR_GUESSES = ("model.multi_modal_projector", "model.visual.merger", "model.connector", "multi_modal_projector", "connector")


def _submodule(model: torch.nn.Module, path: str) -> torch.nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def family_of(config: Any) -> Family:
    """The :class:`Family` of a config's ``model_type``; for an unknown type, one guessed from
    the usual attribute names (``AutoModelForImageTextToText``, LLaVA-style prompt)."""
    known = FAMILIES.get(config.model_type)
    if known is not None:
        return known
    return Family("AutoModelForImageTextToText", _TOWER_GUESSES, "|".join(_PROJECTOR_GUESSES), _LLAVA_PROMPT, "{token}\n", "<image>", "<video>")


class VisionTimingHooks:
    """Forward hooks on the vision tower(s) and the projector: count their calls and time them.

    Each call of a hooked module is bracketed by two marks of ``clock`` (a :mod:`..timing` clock:
    CUDA events on a GPU, ``perf_counter_ns`` on the CPU); nothing synchronises until
    :meth:`take` reads the spans. ``take()`` -> ``{"tower": ms, "projector": ms}`` summed over the
    calls since the last ``take`` (a projector nested inside the tower, as Qwen2-VL's merger, is
    counted in both). ``calls`` -> calls per part since the last ``take``.
    """

    def __init__(self, towers: Sequence[torch.nn.Module], projector: torch.nn.Module | None, clock: Any) -> None:
        self.clock = clock
        self._marks: dict[str, list[tuple[Any, Any]]] = {"tower": [], "projector": []}
        self._open: dict[int, Any] = {}
        self.calls = {"tower": 0, "projector": 0}
        self._handles = []
        parts = [(m, "tower") for m in towers] + ([(projector, "projector")] if projector is not None else [])
        for module, part in parts:
            self._handles.append(module.register_forward_pre_hook(self._start(part)))
            self._handles.append(module.register_forward_hook(self._end(part)))

    def _start(self, part: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any) -> None:
            self._open[id(module)] = self.clock.mark()

        return hook

    def _end(self, part: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            self._marks[part].append((self._open.pop(id(module)), self.clock.mark()))
            self.calls[part] += 1

        return hook

    def take(self) -> dict[str, float]:
        """Milliseconds per part since the last call (synchronises the clock once), and reset."""
        self.clock.synchronize()
        spans = {part: sum(self.clock.elapsed_ns(a, b) for a, b in marks) / 1e6 for part, marks in self._marks.items()}
        self._marks = {"tower": [], "projector": []}
        self.calls = {"tower": 0, "projector": 0}
        return spans

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@dataclass
class HFInputs(Inputs):
    """:class:`.base.Inputs` plus everything the processor returned (``features``: name ->
    tensor on the device, floating ones in the compute dtype) and whether the pixels are a
    video (``pixel_values_videos``)."""

    features: dict[str, torch.Tensor] = field(default_factory=dict)
    video: bool = False


def standin_tokenizer(extra: Sequence[str] = ()) -> Any:
    """The bundled LLaMA 32k tokenizer (:mod:`.tokenization`) with ``extra`` special tokens added
    after ``<image>`` (32000) and ``<video>`` (32001): a stand-in for a family's own tokenizer
    when none is at hand (no hub). Text is counted with the LLaMA vocabulary, so the prompt's
    text tokens differ a little from the family's own tokenizer; its visual tokens do not."""
    from transformers import PreTrainedTokenizerFast

    if not extra:
        return load_tokenizer()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_FILE), bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": list(extra)})
    return tok


class _FramesAsVideo:
    """A video processor for a processor without one that works here (the transformers video
    processors need torchvision): each frame through the model's image processor, stacked to
    ``pixel_values_videos`` ``[B, T, 3, S, S]`` -- what Video-LLaVA's own ``VideoLlavaImageProcessor``
    does for a video."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def __call__(self, videos: Any = None, **kwargs: Any) -> Any:
        from transformers import BatchFeature

        stacked = [self.image_processor(images=list(v), return_tensors="pt")["pixel_values"] for v in videos]
        return BatchFeature({"pixel_values_videos": torch.stack(stacked)}, tensor_type=kwargs.get("return_tensors"))


def _offline(processor_class: type) -> type:
    """``processor_class`` accepting no video processor, or :class:`_FramesAsVideo`: transformers
    checks each sub-processor's class, and looking up the video processors' base class fails
    without torchvision (transformers 5.24)."""

    class Offline(processor_class):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument is None or isinstance(argument, _FramesAsVideo):
                return type(argument)
            return super().check_argument_for_proper_class(argument_name, argument)

    Offline.__name__ = Offline.__qualname__ = processor_class.__name__
    return Offline


def build_processor(config: Any) -> Any:
    """The family's own processor for ``config``, built offline: its image processor with the
    checkpoint's settings (CLIP at the tower's size for LLaVA / Video-LLaVA, as
    :func:`.base.clip_image_processor`; the family's defaults otherwise) and
    :func:`standin_tokenizer`. Raises ``ValueError`` for a family with no offline recipe."""
    import transformers

    kind = config.model_type
    if kind in ("llava", "llava_next"):
        side = config.vision_config.image_size
        cls = transformers.LlavaProcessor if kind == "llava" else transformers.LlavaNextProcessor
        image = clip_image_processor(side) if kind == "llava" else transformers.LlavaNextImageProcessor(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}, image_grid_pinpoints=config.image_grid_pinpoints)  # fmt: skip
        return cls(image_processor=image, tokenizer=standin_tokenizer(), patch_size=config.vision_config.patch_size,
                   vision_feature_select_strategy=config.vision_feature_select_strategy, num_additional_image_tokens=1)  # fmt: skip
    if kind == "video_llava":
        image = clip_image_processor(config.vision_config.image_size)
        return _offline(transformers.VideoLlavaProcessor)(
            image_processor=image, video_processor=_FramesAsVideo(image), tokenizer=standin_tokenizer(), patch_size=config.vision_config.patch_size
        )
    if kind == "llava_onevision":
        side = config.vision_config.image_size
        image = transformers.LlavaOnevisionImageProcessor(size={"height": side, "width": side}, image_grid_pinpoints=config.image_grid_pinpoints)
        return _offline(transformers.LlavaOnevisionProcessor)(image_processor=image, tokenizer=standin_tokenizer(QWEN_TOKENS), num_image_tokens=(side // config.vision_config.patch_size) ** 2,
                                                    vision_feature_select_strategy=config.vision_feature_select_strategy, vision_aspect_ratio=config.vision_aspect_ratio)  # fmt: skip
    if kind in ("qwen2_vl", "qwen2_5_vl"):
        qwen_cls = transformers.Qwen2VLProcessor if kind == "qwen2_vl" else transformers.Qwen2_5_VLProcessor
        image = transformers.Qwen2VLImageProcessor(patch_size=config.vision_config.patch_size, merge_size=config.vision_config.spatial_merge_size)
        return _offline(qwen_cls)(image_processor=image, tokenizer=standin_tokenizer(QWEN_TOKENS))
    raise ValueError(
        f"no offline processor for model_type {kind!r}: put the processor's files (preprocessor_config.json, tokenizer.json) in the checkpoint folder"
    )


def check_safetensors_folder(folder: Path, what: str) -> None:
    """Raise ``ValueError`` unless ``folder`` is a Hugging Face model folder with safetensors
    weights: ``config.json`` present, and no pickled weights (``pytorch_model.bin``, ``*.pt``,
    ...) unless safetensors files sit beside them (then only those are read). Pickles can run
    code when loaded, so they are never read."""
    if not (folder / "config.json").is_file():
        raise ValueError(f"{what} checkpoint {folder}: no config.json (expected a Hugging Face model folder)")
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{what} checkpoint {folder}: {', '.join(pickles)} is pickled weights, which are never loaded (a pickle can run code); "
            "save the model with save_pretrained(safe_serialization=True) to get model.safetensors"
        )
    raise ValueError(f"{what} checkpoint {folder}: no *.safetensors weights")


class GenericHFAdapter(ModelAdapter):
    """Any supported ``transformers`` image-text-to-text model behind the five-stage interface
    (module docstring). Subclasses name a registered model: ``name``, ``input_kind`` ("images":
    a sample's ``images`` or its video's frames as separate images; "video": ``sample.video``)
    and ``build_config`` (preset -> config with the stand-in tokenizer's ids)."""

    #: the family's image (or video) token; each registered subclass declares it, and an instance
    #: takes it from its config's family
    placeholder: ClassVar[str] = ""
    input_kind: ClassVar[str] = "images"
    default_frames: ClassVar[int] = 1
    #: decode runs through the whole model's forward, whose positions differ by family (Qwen2-VL's
    #: 3D rope positions follow the prompt's grid): a static cache and a compiled step of the
    #: plain LM would not run it
    runtimes: ClassVar[tuple[str, ...]] = ("eager",)
    runtimes_note: ClassVar[str] = "the generic transformers adapter runs only the eager runtime (decode through the model's own forward)"
    build_config: ClassVar[staticmethod[[str], Any]]

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, processor: Any, tokenizer_note: str) -> None:
        config: Any = model.config  # a transformers config (nn.Module.__getattr__ types it Tensor | Module)
        self.model = self.lm = model
        self.spec = spec
        self.text_config = config.text_config
        self.vision_config = config.vision_config
        self.device = torch.device(spec.device)
        self.dtype = spec.quant_spec.compute_dtype
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.family = family_of(config)
        self.tokenizer_note = tokenizer_note
        token = self.family.video_token if self.input_kind == "video" else self.family.image_token
        self.placeholder = token  # type: ignore[misc]  # the instance's family token, declared per class for the registry
        self.fill_id = int(self.tokenizer.convert_tokens_to_ids(token))
        self.towers = [m for m in (_submodule(model, p) for p in self.family.towers) if m is not None]
        self.projector = next((m for m in (_submodule(model, p) for p in self.family.projector.split("|")) if m is not None), None)
        #: False when no vision tower was found: vision runs inside prefill (see stage_note)
        self.vision_split = bool(self.towers) and self._features_owner() is not None
        self.load_seconds: float | None = None
        self.runtime: LM = EagerLM(model)

    # ------------------------------------------------------------------ facts for the table
    @property
    def _features_method(self) -> str:
        return "get_video_features" if self.input_kind == "video" else "get_image_features"

    def _features_owner(self) -> Any:
        """The model, or its base model (``model.model``), whichever has :attr:`_features_method`."""
        return next((m for m in (self.model, getattr(self.model, "model", None)) if m is not None and hasattr(m, self._features_method)), None)

    def stage_note(self) -> dict[str, Any]:
        """What ``extra_info`` should say about this model's stages: the family, whether vision
        is a stage of its own (``vision_split``; when False the vision stage is empty and
        prefill includes the tower), and where the prompt's tokenizer came from."""
        note = (
            "vision: tower and projector in the vision stage"
            if self.vision_split
            else "vision merged into prefill: no separable vision tower (vision stage empty)"
        )
        config: Any = self.model.config  # a transformers config (typed Tensor | Module by nn.Module.__getattr__)
        return {"family": config.model_type, "vision_split": self.vision_split, "stages_note": note, "tokenizer": self.tokenizer_note}

    def hooks(self, clock: Any = None) -> VisionTimingHooks:
        """:class:`VisionTimingHooks` on this model's tower(s) and projector (``clock``: default
        the device clock of :func:`..timing.clocks_for`); call ``remove()`` when done."""
        if clock is None:
            from ..timing import clocks_for

            clock = clocks_for(self.device)[0]
        return VisionTimingHooks(self.towers, self.projector, clock)

    # ------------------------------------------------------------------ prompt and inputs
    def prompt(self, sample: VisualInput) -> str:
        token = self.placeholder
        count = 1 if self.input_kind == "video" else len(sample.images if sample.images is not None else ())
        return self.family.prompt.format(visual=self.family.visual.format(token=token) * count, question=sample.question or DEFAULT_QUESTION)

    def frames(self, sample: VisualInput) -> list[np.ndarray]:
        if self.input_kind == "video":
            if sample.video is None:
                raise ValueError(f"{self.name} needs sample.video: frames [N, H, W, 3] uint8")
            return list(check_frames(sample.video, "sample.video", 4))
        if not sample.images:
            raise ValueError(f"{self.name} needs sample.images: one or more [H, W, 3] uint8 arrays")
        return [check_frames(image, f"sample.images[{i}]", 3) for i, image in enumerate(sample.images)]

    def visual_token_counts(self, n_frames: int) -> list[int]:
        raise NotImplementedError(f"{self.name}: its processor counts visual tokens (Inputs.visual_tokens after preprocess)")

    def preprocess(self, sample: VisualInput) -> HFInputs:
        """Stage 2: the model's own processor on the prompt and frames, every tensor copied to
        the device (floating ones in the compute dtype). ``ValueError`` for a sample without the
        arrays this model needs."""
        frames = self.frames(sample)
        media = {"videos": [frames]} if self.input_kind == "video" else {"images": frames}
        out = self.processor(text=self.prompt(sample), **media, return_tensors="pt")
        features = {k: v.to(self.device, self.dtype if v.is_floating_point() else None) for k, v in out.items() if isinstance(v, torch.Tensor)}
        ids = features["input_ids"]
        positions = (ids[0] == self.fill_id).nonzero().flatten()
        pixels = features["pixel_values_videos" if self.input_kind == "video" else "pixel_values"]
        return HFInputs(ids, positions, pixels, int(ids.shape[1]), int(positions.numel()), features, self.input_kind == "video")

    # ------------------------------------------------------------------ stages 3-4
    def _call_kwargs(self, method: Callable[..., Any], inputs: HFInputs) -> dict[str, torch.Tensor]:
        named = [p.name for p in inspect.signature(method).parameters.values() if p.kind is not p.VAR_KEYWORD]
        return {k: v for k, v in inputs.features.items() if k in named and k != "input_ids"}

    def encode_vision(self, inputs: Inputs) -> torch.Tensor:
        """Stage 3: ``[V, hidden]`` from the model's ``get_image_features`` /
        ``get_video_features`` (tower, feature selection, projector; LLaVA-OneVision's any-res
        packing), in placeholder order. Not split (:attr:`vision_split` False): ``[0, hidden]``."""
        assert isinstance(inputs, HFInputs)
        if not self.vision_split:
            return torch.empty(0, self.text_config.hidden_size, device=self.device, dtype=self.dtype)
        method = getattr(self._features_owner(), self._features_method)
        with torch.inference_mode():
            return _features(method(**self._call_kwargs(method, inputs)))

    def _prefill_kwargs(self, inputs: HFInputs) -> dict[str, torch.Tensor]:
        """What the forward takes beside the embeddings: nothing, or (3D-position families) the
        ids and the processor's grid/type tensors, never pixels."""
        if not self.family.ids_with_embeds:
            return {}
        return {k: v for k, v in inputs.features.items() if not k.startswith("pixel_values")}

    def prefill(self, inputs: Inputs, visual: torch.Tensor) -> PrefillState:
        """Stage 4: the model's own forward over the prompt embeddings with stage 3's ``visual``
        ``[V, hidden]`` written at the placeholders (no pixels: the tower cannot run here).
        Not split: the whole forward from pixels, vision included."""
        assert isinstance(inputs, HFInputs)
        if not self.vision_split:
            token, cache, logits = prefill_with_logits(self.model, **inputs.features)
            return PrefillState(token=token, cache=cache, logits=logits, prompt_tokens=inputs.prompt_tokens)
        embed = self.model.get_input_embeddings()  # type: ignore[operator]  # a transformers method, typed Tensor | Module by nn.Module.__getattr__
        embeds = splice_visual(embed(inputs.input_ids), inputs.positions, visual)
        token, cache, logits = prefill_with_logits(self.model, inputs_embeds=embeds, **self._prefill_kwargs(inputs))
        return PrefillState(token=token, cache=cache, logits=logits, prompt_tokens=inputs.prompt_tokens)

    @torch.inference_mode()
    def forward_whole(self, inputs: Inputs) -> tuple[torch.Tensor, Any]:
        from transformers import DynamicCache

        assert isinstance(inputs, HFInputs)
        out = self.model(**inputs.features, **cache_kwargs(self.model, DynamicCache()), use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], output_cache(out)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, spec: ModelSpec) -> GenericHFAdapter:
        """Dummy weights for ``spec.preset`` (:attr:`build_config`) or the checkpoint folder
        ``spec.checkpoint`` (safetensors only, :func:`check_safetensors_folder`; its own processor
        when the folder has one, else one built offline, whose placeholder ids must match the
        config's: ``ValueError`` otherwise)."""
        import transformers

        if spec.checkpoint is not None:
            return cls._from_folder(Path(spec.checkpoint), spec)
        config = cls.build_config(spec.preset)
        model_class = getattr(transformers, family_of(config).model_class)
        quant = spec.quant_spec
        model = build_empty(lambda: model_class._from_config(config, dtype=quant.compute_dtype), spec.device)
        model = materialise(model, spec.device, quant, RandomWeights(spec.seed))
        return cls(model, spec, build_processor(config), _standin_note(config))

    @classmethod
    def _from_folder(cls, folder: Path, spec: ModelSpec) -> GenericHFAdapter:
        import transformers

        check_safetensors_folder(folder, cls.name)
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        family = family_of(config)
        quant = spec.quant_spec
        placement = {} if torch.device(spec.device).type == "cpu" else {"device_map": {"": str(spec.device)}}
        skip = ("lm_head", *family.towers, *family.projector.split("|"))
        model = getattr(transformers, family.model_class).from_pretrained(
            folder, dtype=quant.compute_dtype, quantization_config=quant.bnb_config(skip), local_files_only=True,
            trust_remote_code=False, use_safetensors=True, **placement,
        ).eval()  # fmt: skip
        if (folder / "preprocessor_config.json").is_file() and any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
            processor, note = transformers.AutoProcessor.from_pretrained(folder, local_files_only=True, trust_remote_code=False), f"the checkpoint's ({folder})"
        else:
            processor, note = build_processor(config), _standin_note(config)
        _check_token_ids(config, family, processor.tokenizer, folder, cls.name)
        return cls(model, spec, processor, note)


def _standin_note(config: Any) -> str:
    kind = config.model_type
    return "bundled LLaMA 32k (the model's own)" if kind in ("llava", "video_llava") else "stand-in: LLaMA 32k text vocabulary + the family's special tokens"


def _check_token_ids(config: Any, family: Family, tokenizer: Any, folder: Path, name: str) -> None:
    for token, attribute in zip((family.image_token, family.video_token), family.token_attributes, strict=True):
        found = getattr(config, attribute, None)
        if found is not None and found != tokenizer.convert_tokens_to_ids(token):
            raise ValueError(f"{name} checkpoint {folder}: config {attribute} is {found}, the tokenizer's {token} is {tokenizer.convert_tokens_to_ids(token)}")


def standin_token_ids(model_type: str) -> dict[str, int]:
    """Config attribute -> id of the family's placeholders in :func:`standin_tokenizer`."""
    family = FAMILIES[model_type]
    extra = QWEN_TOKENS if model_type in ("qwen2_vl", "qwen2_5_vl", "llava_onevision") else ()
    tok = standin_tokenizer(extra)
    ids = {a: int(tok.convert_tokens_to_ids(t)) for a, t in zip(family.token_attributes, (family.image_token, family.video_token), strict=True)}
    if model_type.startswith("qwen2"):
        ids.update(
            vision_start_token_id=int(tok.convert_tokens_to_ids("<|vision_start|>")), vision_end_token_id=int(tok.convert_tokens_to_ids("<|vision_end|>"))
        )
    return ids


def _preset_config(name: str) -> staticmethod[[str], Any]:
    """``build_config`` for the :data:`.hf_presets.REAL` entry ``name``: preset -> its config
    (:func:`.hf_presets.hf_config`) with :func:`standin_token_ids` written in."""
    return staticmethod(lambda preset: hf_presets.hf_config(name, preset, standin_token_ids(name)))


# ---------------------------------------------------------------------- registered models
class HFLlavaAdapter(GenericHFAdapter):
    """LLaVA-1.5 through the generic adapter (the hand-written one: :class:`.llava.LlavaAdapter`)."""

    name = "hf_llava"
    placeholder = "<image>"
    build_config = staticmethod(presets.llava_config)


class HFVideoLlavaAdapter(GenericHFAdapter):
    """Video-LLaVA through the generic adapter (hand-written: :class:`.llava.VideoLlavaAdapter`)."""

    name = "hf_video_llava"
    placeholder = "<video>"
    input_kind = "video"
    default_frames = 8
    build_config = staticmethod(presets.video_llava_config)


class Qwen2VLAdapter(GenericHFAdapter):
    """Qwen2-VL with Qwen/Qwen2-VL-2B-Instruct's shapes (``7b`` preset: the real ones)."""

    name = "qwen2_vl"
    placeholder = "<|image_pad|>"
    build_config = _preset_config("qwen2_vl")


class LlavaOnevisionAdapter(GenericHFAdapter):
    """LLaVA-OneVision with llava-hf/llava-onevision-qwen2-0.5b-ov-hf's shapes (``7b``: real)."""

    name = "llava_onevision"
    placeholder = "<image>"
    build_config = _preset_config("llava_onevision")


# ---------------------------------------------------------------------- tested, not built-in names
# Not in registry.BUILTIN: the stage benchmark has no case for them yet. A conftest.py can name
# them for --egbench-models through the pytest_egbench_adapters hook (docs/generic-adapter.md).
class LlavaNextAdapter(GenericHFAdapter):
    """LLaVA-NeXT (LLaVA-1.6) with llava-hf/llava-v1.6-mistral-7b-hf's shapes (``7b``: real):
    each image as its 336 px base view plus the any-res grid's tiles, unpadded, a newline row each."""

    name = "llava_next"
    placeholder = "<image>"
    build_config = _preset_config("llava_next")


class Qwen2_5_VLAdapter(GenericHFAdapter):
    """Qwen2.5-VL with Qwen/Qwen2.5-VL-3B-Instruct's shapes (``7b``: real)."""

    name = "qwen2_5_vl"
    placeholder = "<|image_pad|>"
    build_config = _preset_config("qwen2_5_vl")
