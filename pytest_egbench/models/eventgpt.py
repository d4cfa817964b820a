"""EventGPT on transformers building blocks: a CLIP vision tower, an MLP projector, a feature
adaptor, spatio-temporal pooling and a LLaMA causal LM (docs/design.md#eventgpt-7b).

Per sample of T event frames ``[T, 3, 336, 336]``:

* CLIP ViT-L/14-336, last hidden state with CLS: ``[T, 577, 1024]``
* projector Linear(1024, 4096), GELU, Linear(4096, 4096); feature adaptor Linear(4096, 4096),
  applied once: ``F [T, 577, 4096]``
* pooling: T temporal tokens ``F.mean(1)`` then 577 spatial tokens ``F.mean(0)``: ``[T + 577, 4096]``
  (EventGPT's ``get_spatio_temporal_features``)
* prompt ``eventgpt_v1``: the Vicuna system sentence, then
  `` USER: <ev_start><event><ev_end>\\n{question} ASSISTANT:``; ``<event>`` is replaced by the
  T + 577 visual embeddings. ``<ev_start>``/``<ev_end>`` are plain text to the LLaMA tokenizer
  (not added tokens), and the text around ``<event>`` is tokenised in two pieces as EventGPT's
  ``tokenizer_event_token`` does: 59 tokens with the default question, so the prefill is 637
  tokens for 1 frame and 641 for 5.

The public checkpoint (config ``model_type`` "EventChat_llama") is read by
:func:`load_eventgpt_checkpoint`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import presets
from .base import Inputs, ModelAdapter, ModelSpec, VisualInput, check_frames, splice_visual
from .generation import cache_kwargs, output_cache
from .quant import QuantSpec
from .tokenization import UNK_ID
from .weights import RandomWeights, TensorWeights, build_empty, materialise

EVENT_PLACEHOLDER = "<event>"
#: The system sentence of the Vicuna v1 conversation template that ``eventgpt_v1`` uses.
EVENTGPT_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


def eventgpt_prompt(question: str) -> str:
    """The ``eventgpt_v1`` prompt for one event sample."""
    return f"{EVENTGPT_SYSTEM} USER: <ev_start>{EVENT_PLACEHOLDER}<ev_end>\n{question} ASSISTANT:"


def spatio_temporal_pool(features: torch.Tensor) -> torch.Tensor:
    """``[T, P, C]`` -> ``[T + P, C]``: the mean over positions of each frame (T temporal tokens)
    followed by the mean over frames of each position (P spatial tokens).

    Raises ``ValueError`` for a tensor that is not 3-D.
    """
    if features.ndim != 3:
        raise ValueError(f"features must be [T, P, C], got shape {tuple(features.shape)}")
    return torch.cat([features.mean(dim=1), features.mean(dim=0)], dim=0)


@dataclass
class EventGPTConfig:
    """The LLaMA LM config (``text``) and the CLIP vision config (``vision``)."""

    text: Any
    vision: Any

    @classmethod
    def preset(cls, preset: str) -> EventGPTConfig:
        """``7b``: Vicuna-7B + CLIP ViT-L/14-336; ``tiny``: the same structure, small sizes."""
        return cls(text=presets.llama_config(preset), vision=presets.clip_vision_config(preset, 336))


class EventGPTModel(nn.Module):
    """EventGPT's modules: ``vision_tower`` (``CLIPVisionModel``), ``projector``,
    ``feature_adaptor`` and ``language_model`` (``LlamaForCausalLM``)."""

    def __init__(self, config: EventGPTConfig) -> None:
        from transformers import CLIPVisionModel, LlamaForCausalLM

        super().__init__()
        self.config = config
        hidden = config.text.hidden_size
        self.vision_tower = CLIPVisionModel(config.vision)
        self.projector = nn.Sequential(nn.Linear(config.vision.hidden_size, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.feature_adaptor = nn.Linear(hidden, hidden)
        self.language_model = LlamaForCausalLM(config.text)

    def encode_frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[T, 3, S, S]`` -> ``[T + P, hidden]``: tower (last hidden state, CLS kept), projector,
        adaptor once, pooling. P = (S / patch) ** 2 + 1 (577 at 336 px)."""
        features = self.vision_tower(pixel_values=pixel_values).last_hidden_state
        return spatio_temporal_pool(self.feature_adaptor(self.projector(features)))

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, positions: torch.Tensor, cache: Any = None, **lm_kwargs: Any) -> Any:
        """The whole model from pixels: vision, visual embeddings written at ``positions`` of the
        prompt embeddings, LM forward (``cache`` and ``lm_kwargs`` go to the LM, the cache under
        the name the installed transformers' LM takes)."""
        embeds = splice_visual(self.language_model.get_input_embeddings()(input_ids), positions, self.encode_frames(pixel_values))
        return self.language_model(inputs_embeds=embeds, **cache_kwargs(self.language_model, cache), **lm_kwargs)


class EventGPTAdapter(ModelAdapter):
    """EventGPT behind the five-stage interface; a sample carries ``events`` ``[T, H, W, 3]``."""

    name = "eventgpt"
    placeholder = EVENT_PLACEHOLDER
    input_kind = "event_stream"
    #: 5 event frames, as in the origin runs
    default_frames = 5
    model: EventGPTModel

    @classmethod
    def load(cls, spec: ModelSpec) -> EventGPTAdapter:
        if spec.checkpoint is not None:
            model = load_eventgpt_checkpoint(spec.checkpoint, spec.quant_spec, spec.device)
        else:
            config = EventGPTConfig.preset(spec.preset)
            model = materialise(build_empty(lambda: EventGPTModel(config), spec.device), spec.device, spec.quant_spec, RandomWeights(spec.seed))
        return cls(model, spec, lm=model.language_model, text_config=model.config.text, vision_config=model.config.vision, fill_id=UNK_ID)

    def prompt(self, sample: VisualInput) -> str:
        return eventgpt_prompt(sample.question)

    def frames(self, sample: VisualInput) -> list[np.ndarray]:
        if sample.events is None:
            raise ValueError("EventGPT needs sample.events: event frames [T, H, W, 3] uint8")
        return list(check_frames(sample.events, "sample.events", 4))

    def visual_token_counts(self, n_frames: int) -> list[int]:
        return [n_frames + self.patches + 1]

    def encode_vision(self, inputs: Inputs) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.encode_frames(inputs.pixel_values)

    @torch.inference_mode()
    def forward_whole(self, inputs: Inputs) -> tuple[torch.Tensor, Any]:
        from transformers import DynamicCache

        out = self.model(inputs.input_ids, inputs.pixel_values, inputs.positions, **cache_kwargs(self.model, DynamicCache()), use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], output_cache(out)


# --------------------------------------------------------------------------- checkpoint

#: Public EventGPT key prefix -> this module's parameter prefix (first match wins). The release
#: was saved with transformers 4, whose ``CLIPVisionModel`` nested its weights under
#: ``vision_model.``; transformers 5's keeps them at the top.
CHECKPOINT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.visual_tower.visual_tower.vision_model.", "vision_tower."),
    ("model.visual_projector.", "projector."),
    ("model.feature_adaptor.", "feature_adaptor."),
    ("model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
)
#: Buffers some checkpoints carry; recomputed here, so ignored when present.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq", "embeddings.position_ids")
#: LLaMA config fields read from the checkpoint's config.json.
LLAMA_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling", "hidden_act", "attention_bias", "mlp_bias",
    "head_dim", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
)  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message names the folder and the keys."""


def to_param_name(key: str) -> str | None:
    """This module's parameter name for a public checkpoint key (``None``: no prefix matches)."""
    for old, new in CHECKPOINT_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def to_checkpoint_key(name: str) -> str:
    """The public checkpoint key of one of this module's parameter names."""
    for old, new in CHECKPOINT_PREFIXES:
        if name.startswith(new):
            return old + name[len(new) :]
    raise KeyError(name)


class _CheckpointTensors(Mapping[str, torch.Tensor]):
    """The tensors of a checkpoint folder by parameter name, read one at a time when asked for.

    safetensors files are opened with ``safe_open`` on the target device; ``.bin`` files with
    ``torch.load(weights_only=True, mmap=True)`` (no code runs, nothing is read until used).
    """

    def __init__(self, folder: Path, device: torch.device) -> None:
        self.folder = folder
        self._where: dict[str, tuple[Any, str]] = {}
        self.ignored: list[str] = []
        self.unmapped: list[str] = []
        files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin")) or sorted(folder.glob("*.bin"))
        if not files:
            raise CheckpointError(f"EventGPT checkpoint {folder}: no *.safetensors or pytorch_model*.bin weight files")
        for path in files:
            store = self._open(path, device)
            for key in store.keys():
                if key.endswith(IGNORED_SUFFIXES):
                    self.ignored.append(key)
                    continue
                name = to_param_name(key)
                if name is None:
                    self.unmapped.append(key)
                else:
                    self._where[name] = (store, key)

    @staticmethod
    def _open(path: Path, device: torch.device) -> Any:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            return safe_open(str(path), framework="pt", device=str(device) if device.type != "meta" else "cpu")
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is reported the same way
            raise CheckpointError(f"EventGPT checkpoint {path}: cannot be read with torch.load(weights_only=True): {exc}") from exc

    def shape(self, name: str) -> tuple[int, ...]:
        store, key = self._where[name]
        if isinstance(store, dict):
            return tuple(store[key].shape)
        return tuple(store.get_slice(key).get_shape())

    def __getitem__(self, name: str) -> torch.Tensor:
        store, key = self._where[name]
        return store[key] if isinstance(store, dict) else store.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _vision_config(tensors: _CheckpointTensors, mm_visual_tower: Any) -> Any:
    """CLIP vision config: from ``mm_visual_tower`` when it is a local folder with a config,
    else inferred from the tower's weight shapes (heads = hidden / 64, as in every CLIP ViT)."""
    from transformers import CLIPVisionConfig

    if isinstance(mm_visual_tower, str) and (Path(mm_visual_tower) / "config.json").is_file():
        return CLIPVisionConfig.from_pretrained(mm_visual_tower, local_files_only=True)
    prefix = "vision_tower."
    try:
        hidden, _, patch, _ = tensors.shape(prefix + "embeddings.patch_embedding.weight")
        positions = tensors.shape(prefix + "embeddings.position_embedding.weight")[0]
        intermediate = tensors.shape(prefix + "encoder.layers.0.mlp.fc1.weight")[0]
    except KeyError as exc:
        raise CheckpointError(f"EventGPT checkpoint {tensors.folder}: vision tower weight {to_checkpoint_key(exc.args[0])} is missing") from None
    layers = len({n.split(".")[3] for n in tensors if n.startswith(prefix + "encoder.layers.")})
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        patch_size=patch,
        image_size=patch * math.isqrt(positions - 1),
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


def _show(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_eventgpt_checkpoint(folder: Path | str, quant: QuantSpec, device: torch.device | str) -> EventGPTModel:
    """An :class:`EventGPTModel` with the weights of a public EventGPT checkpoint folder.

    The folder holds ``config.json`` (``model_type`` "EventChat_llama", LLaMA fields,
    ``mm_visual_tower``, ``event_feature_adaptor``) and weights as ``*.safetensors`` or
    ``pytorch_model*.bin`` (sharded or not), keyed ``model.visual_tower.visual_tower.*``,
    ``model.visual_projector.{0,2}.*``, ``model.feature_adaptor.*``, ``model.*`` and ``lm_head.*``.
    Each tensor goes straight to ``device`` and is quantised there (``quant``).

    Raises :class:`CheckpointError` (a ``ValueError``) naming the folder when the config is
    missing or of another model type, and naming the keys when some are missing, unexpected or
    of the wrong shape.
    """
    from transformers import LlamaConfig

    folder = Path(folder)
    device = torch.device(device)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"EventGPT checkpoint {folder}: no config.json")
    raw = json.loads(config_path.read_text())
    if raw.get("model_type") != "EventChat_llama":
        raise CheckpointError(f"EventGPT checkpoint {folder}: config.json model_type is {raw.get('model_type')!r}, expected 'EventChat_llama'")
    for needed in ("mm_visual_tower", "event_feature_adaptor"):
        if not raw.get(needed):
            raise CheckpointError(f"EventGPT checkpoint {folder}: config.json lacks {needed!r} (a checkpoint without the vision tower or the feature adaptor)")
    tensors = _CheckpointTensors(folder, device)
    config = EventGPTConfig(text=LlamaConfig(**{k: raw[k] for k in LLAMA_FIELDS if k in raw}), vision=_vision_config(tensors, raw["mm_visual_tower"]))
    model = build_empty(lambda: EventGPTModel(config), device)
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    missing = [to_checkpoint_key(n) for n in expected if n not in tensors]
    unexpected = tensors.unmapped + [to_checkpoint_key(n) for n in tensors if n not in expected]
    wrong = [f"{to_checkpoint_key(n)} {tensors.shape(n)} (expected {s})" for n, s in expected.items() if n in tensors and tensors.shape(n) != s]
    if missing or unexpected or wrong:
        parts = [
            f"{len(missing)} missing key(s): {_show(missing)}" if missing else "",
            f"{len(unexpected)} unexpected key(s): {_show(unexpected)}" if unexpected else "",
            f"{len(wrong)} of the wrong shape: {_show(wrong)}" if wrong else "",
        ]
        raise CheckpointError(f"EventGPT checkpoint {folder}: " + "; ".join(p for p in parts if p))
    return materialise(model, device, quant, TensorWeights(tensors))
