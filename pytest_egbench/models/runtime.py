"""How the language model runs prefill and decode: the runtime (``--egbench-runtime``).

``eager`` (the default): a growing ``DynamicCache`` and one eager transformers forward per token,
as the origin scripts ran (:mod:`.generation`). Eager decode of a 7B model waits on the host
between kernels, so its time per token follows the host's Python speed (docs/gpu.md#runtimes).

``compiled``: a static KV cache (transformers ``StaticCache``, allocated once for the prompt plus
the decode steps, rounded up to :data:`CACHE_ROUNDING` positions), and both prefill (one graph per
prompt length) and the one-token decode step -- forward, greedy choice of the next token --
compiled with ``torch.compile(fullgraph=True)`` (inductor's generated kernels). On CUDA each
compiled call is then captured once into a ``torch.cuda.CUDAGraph`` (:class:`CudaGraphs`) and
replayed: one launch for the prompt and one per token, no host work between the kernels, the next
token never leaves the device. Eager prefill issues about a thousand kernels for a 7B model and
waits on the host for them: it moved by 49-64 % between two H200 hosts.

Why our own capture and not ``mode="reduce-overhead"`` (torch.compile's CUDA-graph trees, which
this runtime used until session 14): every call through them evaluates the compiled function's
guards and the tree's bookkeeping on the host, and the prefill also reset the static cache eagerly
(``Cache.reset``: a ``zero_()`` per layer's keys and values, about 160 kernels each launched by the
host). Profiled on an H200, 3.9-4.3 ms of a 28 ms compiled NF4 prefill were that host time before
the graph started; host time moves with the host, and the compiled prefill moved by up to 9.9 %
between leases while its kernels' GPU time stayed within 0.4 %
(docs/measurements/h200-session13.md). Now a replay is a copy of the input into the graph's input
buffer and ``CUDAGraph.replay()``, and the cache is not reset: the graphs set the cache layers'
write position themselves (from :attr:`CompiledLM.filled`'s device copy, or 0 for a prompt), a
prompt overwrites positions ``0 .. L-1``, and the entries a longer earlier text left past them are
never attended to (the causal mask; transformers' own ``StaticLayer.crop`` relies on the same). The
compilation (tracing, code generation, CUDA-graph capture) is done by :meth:`CompiledLM.prepare`,
outside the timed rounds, and its wall time is reported apart (``compile_s``), like the model's
load time. Speculative decoding runs on the same static cache (:meth:`CompiledLM.choices`,
:meth:`CompiledLM.truncate`).

``compiled-tuned``: ``compiled`` with inductor's coordinate-descent tuning of the generated Triton
kernels' launch parameters (``torch._inductor.config.coordinate_descent_tuning``, as gpt-fast
sets it); inductor then also writes the one-token matmuls as tuned Triton reductions in place of
cuBLAS's split-K kernels. On an H200 (session 15) it took the 7B bf16 decode step from 5.04 to
4.19 ms a token (56 % to 68 % of the 4.8 TB/s datasheet bandwidth) for a compile of 133 s instead
of 76 s (docs/measurements/h200-session15.md); nothing changes on the CPU.

Weights: bf16, fp16, fp32 and NF4 compile. bitsandbytes' int8 (LLM.int8()) does not on CUDA: its
matmul asks the host whether an activation is an outlier, which a CUDA-graph capture does not
allow; :func:`quant_unsupported` says so before a model is loaded, and :class:`CompiledLM` refuses
such a model (:class:`RuntimeUnsupportedError`) instead of failing a capture after a minute.

Both runtimes give the same greedy tokens up to kernel differences (a test checks it in fp32).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .. import lockstep

if TYPE_CHECKING:  # torch is imported where it is used: the option parser imports RUNTIMES
    import torch

RUNTIMES = ("eager", "compiled", "compiled-tuned")
#: The static KV cache holds the prompt and the decode steps, rounded up to a multiple of this.
CACHE_ROUNDING = 64


class RuntimeUnsupportedError(RuntimeError):
    """The adapter's model cannot run in the runtime asked for (the message says why)."""


#: Why the compiled runtimes refuse bitsandbytes' int8 weights on CUDA. Measured on an H200
#: (bitsandbytes 0.50.2, torch 2.11, session 15): capturing the prefill failed with
#: ``cudaErrorStreamCaptureUnsupported`` at ``if outliers.any():`` in bitsandbytes'
#: ``int8_vectorwise_quant`` (docs/measurements/h200-s15-call1-decode-int8.log).
INT8_CAPTURE = (
    "bitsandbytes' int8 matmul (LLM.int8(), outlier threshold 6.0) asks the host whether any activation is an outlier "
    "(`outliers.any()`), which a CUDA-graph capture does not allow; run int8 with --egbench-runtime eager"
)


def quant_unsupported(runtime: str, quant: str, device_type: str) -> str | None:
    """Why ``runtime`` cannot run weights ``quant`` on a device of type ``device_type`` (``"cuda"``,
    ``"cpu"``), or ``None`` when it can: checked before a model is loaded for nothing. Only the
    compiled runtimes on CUDA with ``int8`` weights are refused (:data:`INT8_CAPTURE`)."""
    if runtime != "eager" and quant == "int8" and device_type == "cuda":
        return f"--egbench-runtime {runtime} with --egbench-quant int8: {INT8_CAPTURE}"
    return None


def _holds_llm_int8_on_cuda(lm: torch.nn.Module) -> bool:
    """Whether ``lm`` has a bitsandbytes ``Linear8bitLt`` layer on CUDA that decomposes outliers
    (threshold above 0): the layers that :data:`INT8_CAPTURE` is about."""
    for module in lm.modules():
        if type(module).__name__ == "Linear8bitLt" and module.weight.device.type == "cuda":
            if getattr(getattr(module, "state", None), "threshold", 0.0) > 0.0:
                return True
    return False


class CompileError(RuntimeError):
    """Compiling the decode step failed (the message names the runtime, the model class and the
    compiler's error)."""


class EagerLM:
    """Prefill and decode as eager forwards on a growing ``DynamicCache`` (:mod:`.generation`)."""

    name = "eager"
    #: eager code is not compiled: always ``None``
    compile_seconds: float | None = None
    #: unused: nothing to report (the compiled runtime's :attr:`CompiledLM.progress`)
    progress: Callable[[str], None] | None = None

    @property
    def compile_parts(self) -> dict[str, float]:
        """Nothing compiled: ``{}`` (:attr:`CompiledLM.compile_parts`)."""
        return {}

    def __init__(self, lm: torch.nn.Module) -> None:
        self.lm = lm

    def prepare(self, prompt_tokens: int, decode_tokens: int, vocab_size: int | None = None) -> float | None:
        """Nothing to compile: returns ``None`` (no compile time to report)."""
        return None

    def prefill(self, **inputs: Any) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """:func:`.generation.prefill_with_logits` on the LM: ``(first token [B, 1], cache, logits [B, vocab])``."""
        from . import generation

        return generation.prefill_with_logits(self.lm, **inputs)

    def decode(self, token: torch.Tensor, cache: Any, steps: int, vocab_size: int | None = None) -> torch.Tensor:
        """:func:`.generation.decode`: ``[B, steps]`` greedy tokens (among the first ``vocab_size`` ids)."""
        from . import generation

        return generation.decode(self.lm, token, cache, steps, vocab_size=vocab_size)

    def cache_positions(self, cache: Any) -> int:
        """Token positions the KV cache holds memory for: the filled length (it grows)."""
        return int(cache.get_seq_length())

    def attended_positions(self, prompt_tokens: int, steps: int, cache: Any) -> float:
        """KV positions one of ``steps`` decode steps after a ``prompt_tokens`` prompt attends
        over, on average: step ``i`` (from 0) writes its token and attends over
        ``prompt_tokens + i + 1`` positions."""
        return prompt_tokens + (steps + 1) / 2


class CompiledLM:
    """Prefill and decode on a static KV cache, each a compiled graph (module docstring).

    ``lm``: a transformers causal LM (batch 1). :meth:`prepare` allocates the cache and compiles;
    :meth:`prefill` and :meth:`decode` call it themselves, untimed by them, if it was not called
    (then the first round pays the compilation). On CUDA the compiled calls are captured into CUDA
    graphs and replayed (:class:`CudaGraphs`); on the CPU they run as inductor's code.

    Beside prefill and decode, :meth:`choices` (k tokens in one compiled forward) and
    :meth:`truncate` (forget positions) make the static cache usable for speculative decoding
    (:class:`pytest_egbench.metrics.speculative.CompiledContinuation`). :attr:`filled` counts the
    positions that hold the text, on the host (reading the cache's own counter would
    synchronise). :class:`RuntimeUnsupportedError` for a model with bitsandbytes int8 layers on
    CUDA (:data:`INT8_CAPTURE`).
    """

    def __init__(self, lm: torch.nn.Module, *, tuned: bool = False) -> None:
        self.lm = lm
        #: coordinate-descent tuning of the generated kernels (the ``compiled-tuned`` runtime)
        self.tuned = tuned
        self.name = "compiled-tuned" if tuned else "compiled"
        if _holds_llm_int8_on_cuda(lm):
            raise RuntimeUnsupportedError(f"{type(lm).__name__}: {quant_unsupported(self.name, 'int8', 'cuda')}")
        self.cache: Any = None
        self.max_cache_len = 0
        #: positions of the static cache that hold the text (prompt and the tokens fed since)
        self.filled = 0
        #: wall seconds the last compilation took (tracing, code generation, graph recording)
        self.compile_seconds: float | None = None
        #: the same, split: ``{"prefill": s, "decode": s}`` (the first includes the cache's allocation)
        self.compile_parts: dict[str, float] = {}
        #: where :meth:`prepare` says what it compiles and how long it took (a line each; the
        #: plugin's fixtures set the terminal), ``None`` for silence
        self.progress: Callable[[str], None] | None = None
        params = inspect.signature(type(lm).forward).parameters
        #: transformers < 5.24 takes ``cache_position``; later versions track it in the cache
        self._takes_cache_position = "cache_position" in params
        from .generation import cache_keyword

        model_class: type = type(lm)  # plain ``type``: mypy does not take ``type[Module]`` for Hashable
        self._cache_keyword = cache_keyword(model_class)  # looked up here: dynamo would trace its functools.cache
        self._position: torch.Tensor | None = None
        #: the first prefill into a new cache runs eagerly: it allocates the cache's tensors
        #: (transformers allocates a static layer on its first update), which must not happen
        #: inside a graph
        self._fresh = True
        self._step = CudaGraphs(_compile(self._eager_step))
        #: the same step for k >= 2 tokens (a verification, a draft's catch-up), compiled once with
        #: k symbolic: one inductor compilation for every k, one CUDA graph captured per k
        self._multi = CudaGraphs(_compile(self._eager_step, dynamic=None))
        self._prompt = CudaGraphs(_compile(self._eager_prompt))

    # -------------------------------------------------------------- the compiled functions
    def _eager_step(self, ids: torch.Tensor, start: torch.Tensor, vocab_size: int | None) -> torch.Tensor:
        """``ids`` ``[1, k]`` fed at positions ``start .. start + k - 1`` (``start``: ``[1]`` on the
        device): the greedy choice after each, ``[1, k]``, among the first ``vocab_size`` ids (all
        for ``None``). The cache layers write from ``start`` whatever they counted before, so that
        a replay of the step's graph writes where :attr:`filled` says."""
        import torch

        self._write_from(start)
        positions = start + torch.arange(ids.shape[1], device=ids.device)
        extra = {"cache_position": positions} if self._takes_cache_position else {}
        out = self.lm(input_ids=ids, position_ids=positions[None], use_cache=True, **{self._cache_keyword: self.cache}, **extra)
        return out.logits[..., :vocab_size].argmax(-1)

    def _eager_prompt(
        self, inputs_embeds: torch.Tensor | None, input_ids: torch.Tensor | None = None, **model_kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt (``inputs_embeds`` ``[1, L, hidden]`` or ``input_ids`` ``[1, L]``, with a
        forward's extra inputs) into positions ``0 .. L-1``: ``(first token [1, 1], last logits
        [1, vocab])``. Compiled with embeddings alone (``_prompt``)."""
        import torch

        prompt = inputs_embeds if inputs_embeds is not None else input_ids
        assert prompt is not None
        positions = torch.arange(prompt.shape[1], device=prompt.device)
        self._write_from(positions[:1])  # the prompt starts the text again: no reset of the cache needed
        extra = {"cache_position": positions} if self._takes_cache_position else {}
        tokens = {"inputs_embeds": inputs_embeds, "input_ids": input_ids, **model_kwargs}
        out = self.lm(**tokens, position_ids=positions[None], use_cache=True, logits_to_keep=1, **{self._cache_keyword: self.cache}, **extra)
        logits = out.logits[:, -1]
        return logits.argmax(-1, keepdim=True), logits

    def _write_from(self, start: torch.Tensor) -> None:
        """Set every initialised cache layer's write position (transformers' ``cumulative_length``:
        its next ``update`` writes there and counts on) to ``start`` (``[1]``, on the device).
        Traced into the compiled graphs; a layer not yet written holds no tensors and starts at 0."""
        for layer in getattr(self.cache, "layers", ()):
            if getattr(layer, "is_initialized", False):
                length = layer.cumulative_length
                length.copy_(start.reshape(length.shape))

    def _allocate(self, positions: int) -> None:
        """A static cache of ``positions`` rounded up to :data:`CACHE_ROUNDING`; the one there is
        kept when it has that length already (its compiled graphs stay valid)."""
        import torch
        from transformers import StaticCache

        length = -(-positions // CACHE_ROUNDING) * CACHE_ROUNDING
        if self.cache is not None and length == self.max_cache_len:
            self._set_filled(0)
            return
        config: Any = self.lm.config  # a transformers PreTrainedModel
        self.cache = _static_cache(StaticCache, config, length, self.lm)
        for graphs in (self._step, self._multi, self._prompt):  # they write into the old cache's tensors
            if isinstance(graphs, CudaGraphs):
                graphs.clear()
        self.max_cache_len = length
        self.filled = 0
        self._fresh = True
        device = next(self.lm.parameters()).device
        self._position = torch.zeros(1, dtype=torch.long, device=device)

    def prepare(self, prompt_tokens: int, decode_tokens: int, vocab_size: int | None = None) -> float:
        """Allocate the static cache for ``prompt_tokens + decode_tokens`` positions and compile
        prefill (on that prompt length) and the decode step choosing among the first
        ``vocab_size`` ids (all for ``None``; a graph per value): the compilation and, on CUDA, the
        graphs' capture (:class:`CudaGraphs`) and a replay, on a prompt of token id 0. Returns the
        wall seconds it took, device synchronised (also kept in :attr:`compile_seconds`). Another
        prompt length later compiles prefill again; a larger one allocates a larger cache and
        compiles both again. :class:`CompileError` when compiling fails (a model or weight format
        torch.compile cannot trace in one graph), naming the runtime, the stage and the model
        class; out of memory is ``torch.cuda.OutOfMemoryError`` as it is."""
        import torch

        device = next(self.lm.parameters()).device
        model = type(self.lm).__name__
        if self.progress:
            self.progress(f"egbench: compiling {model} ({self.name}): prefill of {prompt_tokens} tokens, decode step ...")
        start = time.perf_counter()
        with lockstep.outside_rounds():  # in a pinned A/B process: compile on all its CPUs
            self._allocate(prompt_tokens + decode_tokens)
            ids = torch.zeros(1, prompt_tokens, dtype=torch.long, device=device)
            with self._compiling("prefill"):
                for _ in range(3):  # the first fills the new cache eagerly, then compilation and capture, a replay
                    token, cache, _ = self.prefill(input_ids=ids)
            _synchronize(device)
            prefill_done = time.perf_counter()
            with self._compiling("decode step"):
                self.decode(token, cache, min(3, decode_tokens), vocab_size)
            _synchronize(device)
        end = time.perf_counter()
        self.compile_seconds = end - start
        self.compile_parts = {"prefill": prefill_done - start, "decode": end - prefill_done}
        if self.progress:
            self.progress(
                f"egbench: compiled {model} in {self.compile_seconds:.1f} s (prefill {self.compile_parts['prefill']:.1f} s, decode step {self.compile_parts['decode']:.1f} s)"
            )
        return self.compile_seconds

    @contextlib.contextmanager
    def _compiling(self, what: str) -> Iterator[None]:
        """A context turning a compiler's error into :class:`CompileError` (out of memory passes)."""
        import torch

        try:
            yield
        except torch.cuda.OutOfMemoryError:
            raise
        except (ValueError, CompileError):  # this class's own refusals, as they are
            raise
        except Exception as exc:  # dynamo/inductor raise many types; all mean "this does not compile"
            raise CompileError(f"--egbench-runtime {self.name}: compiling the {what} of {type(self.lm).__name__} failed: {type(exc).__name__}: {exc}") from exc

    # -------------------------------------------------------------- stages
    def prefill(
        self, *, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None, **model_kwargs: Any
    ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """The prompt into the static cache (its positions forgotten first; a new, larger cache
        when it cannot hold the prompt and :data:`CACHE_ROUNDING` more): ``(first token [1, 1],
        cache, last-position logits [1, vocab])``. Token ids are embedded first (one gather), so
        that ids and embeddings share one compiled graph per prompt length. ``model_kwargs``
        (a forward's extra inputs) run the forward eagerly. ``ValueError`` for a batch other than
        1 or no input."""
        import torch

        with torch.inference_mode(), _inductor_settings(self.tuned):
            return self._prefill(input_ids, inputs_embeds, model_kwargs)

    def _prefill(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, model_kwargs: dict[str, Any]
    ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        prompt = input_ids if input_ids is not None else inputs_embeds
        if prompt is None:
            raise ValueError("pass input_ids or inputs_embeds")
        if prompt.shape[0] != 1:
            raise ValueError(f"the compiled runtime decodes batch 1, got a batch of {prompt.shape[0]}")
        length = prompt.shape[1]
        if self.cache is None or length + 1 > self.max_cache_len:
            self._allocate(length + CACHE_ROUNDING)
        if model_kwargs:  # a forward with extra inputs (pixels, grid sizes): eagerly
            token, logits = self._eager_prompt(inputs_embeds, input_ids, **model_kwargs)
        else:
            if inputs_embeds is None:
                lm: Any = self.lm  # a transformers PreTrainedModel
                inputs_embeds = lm.get_input_embeddings()(input_ids)
            elif not inputs_embeds.is_inference():
                # torch.compile guards on the dispatch keys: embeddings made outside inference
                # mode (an adapter's merged text and image embeddings) would recompile the graph
                # `prepare` recorded from ids, in the benchmark's first round, outside compile_s
                inputs_embeds = inputs_embeds.clone()
            prompt_step = self._eager_prompt if self._fresh else self._prompt
            token, logits = (t.clone() for t in prompt_step(inputs_embeds))  # graph outputs are overwritten by the next replay
        self._fresh = False
        assert self._position is not None
        self._position.fill_(length)  # the layers counted the prompt themselves (``_write_from``)
        self.filled = length
        return token, self.cache, logits

    def decode(self, token: torch.Tensor, cache: Any, steps: int, vocab_size: int | None = None) -> torch.Tensor:
        """``steps`` greedy tokens ``[1, steps]``, one compiled step each, after :meth:`prefill`,
        choosing among the first ``vocab_size`` ids (all for ``None``). ``ValueError`` when the
        static cache has no room for them (it was sized by :meth:`prepare` or the prompt plus
        :data:`CACHE_ROUNDING`)."""
        import torch

        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if cache is not self.cache or self._position is None:
            raise ValueError("decode the cache of this runtime's last prefill")
        self._room(steps)
        produced = torch.empty(1, steps, dtype=torch.long, device=token.device)
        with torch.inference_mode(), _inductor_settings(self.tuned):  # compilation happens in the first steps
            for i in range(steps):
                token = self._step(token, self._position, vocab_size).clone()
                produced[:, i : i + 1] = token
                self._position += 1
        self.filled += steps
        return produced

    # -------------------------------------------------------------- speculative decoding
    def choices(self, ids: torch.Tensor, vocab_size: int | None = None) -> torch.Tensor:
        """Feed ``ids`` ``[1, k]`` at the next ``k`` positions in one compiled forward (one graph
        per k): the greedy choice after each, ``[1, k]`` on the device, not synchronised.
        ``ValueError`` when the cache has no room for them."""
        import torch

        if self._position is None:
            raise ValueError("prefill first")
        self._room(ids.shape[1])
        k = ids.shape[1]
        ids = _row_major(ids)
        step = self._step
        if k > 1:
            step = self._multi
            torch._dynamo.mark_dynamic(ids, 1, min=2, max=self.max_cache_len)
        with torch.inference_mode(), _inductor_settings(self.tuned):
            out = step(ids, self._position, vocab_size).clone()
            self._position += ids.shape[1]
        self.filled += ids.shape[1]
        return out

    def truncate(self, length: int) -> None:
        """Forget the positions from ``length`` on: the next token is written at ``length``. Later
        writes overwrite the stale entries, and attention never reads a position past the query's
        own (the causal mask). ``ValueError`` unless ``0 <= length <= filled``."""
        if not 0 <= length <= self.filled:
            raise ValueError(f"cannot truncate a cache of {self.filled} filled positions to {length}")
        if length != self.filled:
            self._set_filled(length)

    def _set_filled(self, length: int) -> None:
        import torch

        assert self._position is not None
        with torch.inference_mode():  # the cache's tensors were made in inference mode
            self._position.fill_(length)
            self._write_from(self._position)  # transformers' static layers count what they hold
        self.filled = length

    def _room(self, tokens: int) -> None:
        if self.filled + tokens > self.max_cache_len:
            raise ValueError(f"the static KV cache holds {self.max_cache_len} positions: {self.filled} filled, no room for {tokens} more")

    def cache_positions(self, cache: Any) -> int:
        """Token positions the static cache holds memory for: all of them, filled or not."""
        return self.max_cache_len

    def attended_positions(self, prompt_tokens: int, steps: int, cache: Any) -> float:
        """KV positions a decode step attends over: the whole static cache (masked, but read)."""
        return self.max_cache_len


LM = EagerLM | CompiledLM


class CudaGraphs:
    """A compiled function of device tensors, replayed from CUDA graphs on CUDA.

    ``fn(x, *static)``: ``x`` a tensor (the prompt's embeddings ``[1, L, hidden]``, a step's token
    ids ``[1, k]``), ``static`` what else it takes (a tensor whose address stays, a Python value),
    returning a tuple of tensors or one tensor. The first call with a new key (``x``'s shape and
    dtype, each static argument's address or value) runs ``fn`` twice on a side stream (torch.compile
    compiles, inductor tunes, lazy modules load: once on ``x``, once on an input buffer of the
    graph's own holding a copy of ``x``), then captures one call on that buffer into a
    ``torch.cuda.CUDAGraph`` and replays it. Every
    later call copies ``x`` into that buffer and replays: two launches from the host, no guard
    evaluation. The outputs are the graph's own tensors, overwritten by the next replay of any key:
    clone what you keep. On a device other than CUDA, ``fn`` is called as it is.

    ``fn`` must do the same thing on every call with a key (a CUDA graph replays its kernels on the
    captured addresses; Python-side state it reads is frozen at capture), and what it writes must
    not depend on how often it ran (the warm-up calls write too): :class:`CompiledLM`'s graphs set
    the cache's write position from their input. All graphs of one instance share one memory pool
    (they never run at once). Errors: what capturing raises (``torch.cuda.OutOfMemoryError`` for
    memory), as it is.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self._graphs: dict[tuple, tuple[Any, Any, Any]] = {}
        self._pool: Any = None

    def __len__(self) -> int:
        """The graphs captured so far (one per key)."""
        return len(self._graphs)

    def clear(self) -> None:
        """Forget the captured graphs (the tensors they write into were replaced)."""
        self._graphs.clear()
        self._pool = None

    def __call__(self, x: torch.Tensor, *static: Any) -> Any:
        if x.device.type != "cuda":
            return self.fn(x, *static)
        key = (tuple(x.shape), x.dtype, *(a.data_ptr() if hasattr(a, "data_ptr") else a for a in static))
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._graphs[key] = self._capture(x, static)
        buffer, graph, out = entry
        buffer.copy_(x)
        graph.replay()
        return out

    def _capture(self, x: torch.Tensor, static: tuple) -> tuple[Any, Any, Any]:
        import torch

        buffer = x.clone()  # outside the graph's pool: the input the replays copy into
        caller = torch.cuda.current_stream(x.device)
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(caller)
        with torch.cuda.stream(side):
            # the caller's tensor first (what torch.compile reads off it: ``mark_dynamic``), then the
            # buffer, so that any guard the buffer fails recompiles here and not during the capture
            for arg in (x, buffer):
                self.fn(arg, *static)
        caller.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self.fn(buffer, *static)
        self._pool = graph.pool()
        return buffer, graph, out


#: Recompilations torch.compile may make of the decode step (one per static-cache length and
#: model) before it would fall back to eager code; past it, fail rather than time eager code.
RECOMPILE_LIMIT = 64


def _row_major(ids: torch.Tensor) -> torch.Tensor:
    """``ids`` ``[1, k]`` with the strides of a fresh tensor, ``(k, 1)``: a view where its one row
    is already consecutive in memory (a slice of a wider row), else a copy.

    Why: torch.compile guards on an input's strides. A draft's proposal is the last column of its
    ``[1, k]`` choices (stride ``(k, 1)``), so every gamma and every catch-up length gave the
    compiled step an input of another stride, and each one recompiled it: on the CPU with the tiny
    models, six graphs for gamma 1, 2, 4, 8 where two are needed; on a 7B model each is a compilation
    of tens of seconds and a CUDA-graph recording."""
    k = ids.shape[1]
    if ids.stride() == (k, 1) or ids.shape[0] != 1:
        return ids
    if ids.stride(1) == 1 or k == 1:
        return ids.as_strided((1, k), (k, 1))
    return ids.contiguous().as_strided((1, k), (k, 1))


def _compile(step: Any, dynamic: bool | None = False) -> Any:
    """``torch.compile(step, fullgraph=True, dynamic=dynamic)`` with dynamo's recompile
    limit raised to :data:`RECOMPILE_LIMIT` and a hit of it made an error (never a silent fall
    back to eager code). ``dynamic=None`` honours ``torch._dynamo.mark_dynamic`` on the inputs."""
    import torch
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):  # renamed in torch 2.6
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), RECOMPILE_LIMIT))
            break
    if hasattr(dynamo_config, "fail_on_recompile_limit_hit"):
        dynamo_config.fail_on_recompile_limit_hit = True
    return torch.compile(step, fullgraph=True, dynamic=dynamic)


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA; nothing to wait for on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inductor_settings(tuned: bool) -> Any:
    """A context in which inductor compiles with coordinate-descent tuning (``tuned``), or one that
    leaves its settings alone."""
    import contextlib

    import torch._inductor.config as inductor

    return inductor.patch(coordinate_descent_tuning=True) if tuned else contextlib.nullcontext()


def _static_cache(cache_class: Any, config: Any, length: int, lm: torch.nn.Module) -> Any:
    """A ``StaticCache`` of ``length`` positions under the signature of the installed
    transformers: ``(config, max_cache_len)`` since 5.x's lazy layers, ``(config,
    max_batch_size, max_cache_len, device, dtype)`` before."""
    params = inspect.signature(cache_class.__init__).parameters
    if "max_batch_size" in params or "device" in params:
        parameter = next(lm.parameters())
        dtype = getattr(config, "torch_dtype", None) or parameter.dtype
        return cache_class(config=config, max_batch_size=1, max_cache_len=length, device=parameter.device, dtype=dtype)
    return cache_class(config=config, max_cache_len=length)


def lm_runtime(name: str, lm: torch.nn.Module) -> LM:
    """The runtime ``name`` (one of :data:`RUNTIMES`) for the causal LM ``lm``; ``ValueError``
    for another name."""
    if name == "eager":
        return EagerLM(lm)
    if name in ("compiled", "compiled-tuned"):
        return CompiledLM(lm, tuned=name == "compiled-tuned")
    raise ValueError(f"unknown runtime {name!r}: choose from {', '.join(RUNTIMES)}")
