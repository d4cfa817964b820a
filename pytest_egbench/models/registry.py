"""The one model registry: ``--egbench-models`` names -> adapter classes, and the function that
loads a model.

A run's registry is the built-in adapters (:data:`BUILTIN`), then third-party ones from two
sources (docs/adapters.md):

* the entry-point group :data:`ENTRY_POINT_GROUP` of installed distributions: the entry point's
  name is the model name, its value ``module:Class``;
* the ``pytest_egbench_adapters(config)`` hook (:mod:`pytest_egbench.hooks`) in a ``conftest.py``
  or plugin, returning ``{name: "module:Class" or the class}``.

An adapter is named by a ``"module:Class"`` string and imported only when first asked for, so this
module imports neither torch nor the adapters: plain ``pytest`` reads the names without them.
What an adapter needs (its input kind) and its defaults (frames) are declared on the class
(:class:`~pytest_egbench.models.base.ModelAdapter`), in no table here.

The plugin builds the run's registry in ``pytest_configure`` and makes it :func:`current` for the
run (restored at ``pytest_unconfigure``); :func:`adapter_class` and :func:`load_model` look names up
in it.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from .base import ModelAdapter, ModelSpec

#: ``"module:Class"`` or the class itself.
Target = Union[str, "type[ModelAdapter]"]

#: Built-in adapters: model name -> ``"module:Class"``. Registering one more is one line here.
BUILTIN: dict[str, str] = {
    "eventgpt": "pytest_egbench.models.eventgpt:EventGPTAdapter",
    "video_llava": "pytest_egbench.models.llava:VideoLlavaAdapter",
    "llava": "pytest_egbench.models.llava:LlavaAdapter",
    # the generic transformers adapter (hf_generic.py, docs/generic-adapter.md): LLaVA-1.5 and
    # Video-LLaVA as a check on the hand-written ones, Qwen2-VL-2B and LLaVA-OneVision-0.5B shapes
    "hf_llava": "pytest_egbench.models.hf_generic:HFLlavaAdapter",
    "hf_video_llava": "pytest_egbench.models.hf_generic:HFVideoLlavaAdapter",
    "qwen2_vl": "pytest_egbench.models.hf_generic:Qwen2VLAdapter",
    "llava_onevision": "pytest_egbench.models.hf_generic:LlavaOnevisionAdapter",
}
#: The entry-point group third-party distributions register adapters in.
ENTRY_POINT_GROUP = "pytest_egbench.adapters"
#: What a model name looks like once normalised (:func:`normalise`).
MODEL_NAME = re.compile(r"[a-z][a-z0-9_.]*")


class RegistryError(ValueError):
    """A name or adapter that cannot be registered or loaded; the message names its source."""


def normalise(name: str) -> str:
    """``name`` as the registry keys it: stripped, lower case, ``-`` as ``_`` (``Video-LLaVA`` ->
    ``video_llava``)."""
    return name.strip().lower().replace("-", "_")


class Registry:
    """Model names -> adapter targets, each with the source that registered it (for messages).

    ``builtin``: the first entries (default :data:`BUILTIN`, source ``"built-in"``).
    """

    def __init__(self, builtin: Mapping[str, Target] | None = None) -> None:
        self._targets: dict[str, Target] = {}
        self._sources: dict[str, str] = {}
        self._classes: dict[str, type[ModelAdapter]] = {}
        for name, target in (BUILTIN if builtin is None else builtin).items():
            self.add(name, target, "built-in")

    def add(self, name: str, target: Target, source: str) -> None:
        """Register ``target`` under ``name`` (normalised). The same target twice is a no-op.

        Raises :class:`RegistryError` for a bad name, a target that is neither ``"module:Class"``
        nor a class, or a name already taken by another target (naming both sources).
        """
        key = normalise(str(name))
        if not MODEL_NAME.fullmatch(key) or key == "all":
            raise RegistryError(f"{source}: {name!r} is not a model name: use letters, digits, '_', '.', starting with a letter ('all' is reserved)")
        if isinstance(target, str):
            module, sep, attr = target.partition(":")
            if not sep or not module.strip() or not attr.strip():
                raise RegistryError(f"{source}: model {key!r}: {target!r} is not 'module:Class'")
        elif not isinstance(target, type):
            raise RegistryError(f"{source}: model {key!r}: expected 'module:Class' or an adapter class, got {type(target).__name__}")
        if key in self._targets:
            if _same(self._targets[key], target):
                return
            raise RegistryError(f"{source}: model {key!r} is already registered by {self._sources[key]} ({_label(self._targets[key])}), not {_label(target)}")
        self._targets[key], self._sources[key] = target, source

    def add_all(self, mapping: Mapping[str, Target] | object, source: str) -> None:
        """:meth:`add` every item of ``mapping`` (``None`` adds nothing). Raises
        :class:`RegistryError` when ``mapping`` is not a mapping."""
        if mapping is None:
            return
        if not isinstance(mapping, Mapping):
            raise RegistryError(f"{source}: must return a dict {{name: 'module:Class' or class}}, got {type(mapping).__name__}")
        for name, target in mapping.items():
            self.add(name, target, source)

    def add_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every entry point of ``group`` in the installed distributions (name ->
        value ``module:Class``), each as source ``entry point NAME of DIST``."""
        from importlib.metadata import entry_points

        for ep in entry_points(group=group):
            dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
            self.add(ep.name, ep.value, f"entry point {ep.name!r} ({group}) of {dist}")

    @property
    def names(self) -> tuple[str, ...]:
        """The registered names, built-ins first, then in registration order."""
        return tuple(self._targets)

    def source(self, name: str) -> str:
        """Who registered ``name`` ("built-in", "entry point ...", "conftest ...")."""
        return self._sources[normalise(name)]

    def select(self, asked: Iterable[str]) -> tuple[str, ...]:
        """``asked`` (names, or ``["all"]``) as registered names, deduplicated in order.
        Raises :class:`RegistryError` listing the unknown names and the known ones."""
        names = [normalise(n) for n in asked]
        if names == ["all"]:
            return self.names
        unknown = [n for n in names if n not in self._targets]
        if unknown:
            raise RegistryError(f"unknown model(s) {', '.join(unknown)}: known are {', '.join(self.names)}")
        return tuple(dict.fromkeys(names))

    def adapter_class(self, name: str) -> type[ModelAdapter]:
        """The adapter class of model ``name``, imported on first use and checked: a subclass of
        :class:`~pytest_egbench.models.base.ModelAdapter` whose declarations are valid
        (:meth:`ModelAdapter.check_declarations`). Raises :class:`RegistryError` for an unknown
        name, a target that does not import, or a class that is not an adapter."""
        key = normalise(name)
        if key not in self._targets:
            raise RegistryError(f"unknown model {name!r}: known are {', '.join(self.names)}")
        if key not in self._classes:
            self._classes[key] = self._import(key)
        return self._classes[key]

    def _import(self, key: str) -> type[ModelAdapter]:
        from .base import ModelAdapter

        target, source = self._targets[key], self._sources[key]
        obj: object
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            try:
                obj = importlib.import_module(module.strip())
                for part in attr.strip().split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as exc:
                raise RegistryError(f"{source}: model {key!r}: cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
        else:
            obj = target
        if not (isinstance(obj, type) and issubclass(obj, ModelAdapter)):
            raise RegistryError(f"{source}: model {key!r}: {_label(target)} is not a subclass of pytest_egbench.models.base.ModelAdapter")
        try:
            obj.check_declarations()
        except ValueError as exc:
            raise RegistryError(f"{source}: model {key!r}: {exc}") from None
        return obj


def _label(target: Target) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def _same(a: Target, b: Target) -> bool:
    return a is b or _label(a).replace(" ", "") == _label(b).replace(" ", "")


_current = Registry()


def current() -> Registry:
    """The registry of the running session (the built-ins outside one)."""
    return _current


def use(registry: Registry) -> Registry:
    """Make ``registry`` :func:`current`; returns the one it replaces (the plugin restores it)."""
    global _current
    previous, _current = _current, registry
    return previous


def adapter_class(name: str) -> type[ModelAdapter]:
    """The adapter class of model ``name`` in the :func:`current` registry; :class:`RegistryError`
    (a ``ValueError``) for an unknown name or a broken adapter."""
    return _current.adapter_class(name)


def load_model(spec: ModelSpec) -> ModelAdapter:
    """Load ``spec`` (dummy weights, or ``spec.checkpoint``) and record ``load_seconds``
    (wall time, including the device work: a CUDA device is synchronised at the end)."""
    import torch

    start = time.perf_counter()
    adapter = adapter_class(spec.name).load(spec)
    if adapter.device.type == "cuda":
        torch.cuda.synchronize(adapter.device)
    adapter.load_seconds = time.perf_counter() - start
    return adapter
