"""The compiled runtime (static KV cache, torch.compile'd decode step) against the eager one.

Oracle: the eager path (a growing ``DynamicCache``, one plain forward per token), itself checked
against one full forward in test_generation. On the CPU ``reduce-overhead`` compiles inductor code
without CUDA graphs; the static cache, the positions and the greedy loop are the same code.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from pytest_egbench.models.base import ModelSpec  # noqa: E402
from pytest_egbench.models.llama import dummy_llama  # noqa: E402
from pytest_egbench.models.memory import kv_bytes_per_token, kv_cache_bytes, measured_kv_cache_bytes  # noqa: E402
from pytest_egbench.models.runtime import CACHE_ROUNDING, CompiledLM, EagerLM, RuntimeUnsupportedError, lm_runtime  # noqa: E402

PROMPT, STEPS = 37, 12


@pytest.fixture(scope="module")
def lm():
    return dummy_llama("tiny", "fp32", "cpu")


@pytest.fixture(scope="module")
def compiled(lm):
    runtime = CompiledLM(lm)
    lines: list[str] = []
    runtime.progress = lines.append
    seconds = runtime.prepare(PROMPT, STEPS)
    assert seconds > 0 and runtime.compile_seconds == seconds
    # the terminal hears what compiles, and when it is done, how long it took
    assert lines == [
        f"egbench: compiling LlamaForCausalLM (compiled): prefill of {PROMPT} tokens, decode step ...",
        f"egbench: compiled LlamaForCausalLM in {seconds:.1f} s"
        f" (prefill {runtime.compile_parts['prefill']:.1f} s, decode step {runtime.compile_parts['decode']:.1f} s)",
    ]
    assert set(runtime.compile_parts) == {"prefill", "decode"}
    assert sum(runtime.compile_parts.values()) == pytest.approx(seconds)
    runtime.progress = None
    return runtime


def _prompt(lm, length=PROMPT, seed=0):
    return torch.randint(3, lm.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(seed))


def test_compiled_decode_gives_the_eager_tokens(lm, compiled):
    eager = EagerLM(lm)
    for seed in (0, 1):  # two rounds on the same static cache: the reset between them is complete
        ids = _prompt(lm, seed=seed)
        first_e, cache_e, logits_e = eager.prefill(input_ids=ids)
        first_c, cache_c, logits_c = compiled.prefill(input_ids=ids)
        torch.testing.assert_close(logits_c, logits_e, rtol=1e-4, atol=1e-4)
        assert first_c.tolist() == first_e.tolist()
        tokens_e = eager.decode(first_e, cache_e, STEPS)
        tokens_c = compiled.decode(first_c, cache_c, STEPS)
        assert tokens_c.tolist() == tokens_e.tolist()
        assert int(cache_c.get_seq_length()) == PROMPT + STEPS == int(cache_e.get_seq_length())


def test_static_cache_memory_is_its_whole_length(lm, compiled):
    _, cache, _ = compiled.prefill(input_ids=_prompt(lm))
    positions = compiled.cache_positions(cache)
    # allocated once for prompt + steps, rounded up: 37 + 12 = 49 -> 64
    assert positions == CACHE_ROUNDING == 64
    assert measured_kv_cache_bytes(cache) == kv_cache_bytes(lm.config, positions, torch.float32) == positions * kv_bytes_per_token(lm.config, torch.float32)


def test_compiled_decode_refuses_what_the_cache_cannot_hold(lm, compiled):
    first, cache, _ = compiled.prefill(input_ids=_prompt(lm))
    with pytest.raises(ValueError, match="static KV cache holds 64 positions: 37 filled, no room for 28"):
        compiled.decode(first, cache, 28)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        compiled.decode(first, cache, -1)
    with pytest.raises(ValueError, match="batch 1"):
        compiled.prefill(input_ids=torch.zeros(2, 5, dtype=torch.long))


def test_runtime_names(lm):
    assert isinstance(lm_runtime("eager", lm), EagerLM)
    with pytest.raises(ValueError, match="unknown runtime 'graph': choose from eager, compiled"):
        lm_runtime("graph", lm)


def test_generic_adapter_refuses_the_compiled_runtime():
    from pytest_egbench.models.registry import load_model

    adapter = load_model(ModelSpec("llava_onevision", preset="tiny"))
    adapter.use_runtime("eager")
    with pytest.raises(RuntimeUnsupportedError, match="only the eager runtime"):
        adapter.use_runtime("compiled")
    with pytest.raises(ValueError, match="unknown runtime"):
        adapter.use_runtime("graph")


def test_tuned_runtime_is_the_compiled_one_with_coordinate_descent_tuning(lm):
    import torch._inductor.config as inductor

    runtime = lm_runtime("compiled-tuned", lm)
    assert isinstance(runtime, CompiledLM) and runtime.tuned and runtime.name == "compiled-tuned"
    assert lm_runtime("compiled", lm).name == "compiled"
    before = inductor.coordinate_descent_tuning
    seen = []
    runtime._step = lambda token, position, vocab_size: seen.append(inductor.coordinate_descent_tuning) or token  # the setting while compiling
    first, cache, _ = runtime.prefill(input_ids=_prompt(lm))
    runtime.decode(first, cache, 2)
    assert seen == [True, True]
    assert inductor.coordinate_descent_tuning == before


def test_a_step_that_does_not_compile_is_a_clear_error(lm):
    from pytest_egbench.models.runtime import CompileError

    runtime = CompiledLM(lm)

    def untraceable(token, position, vocab_size):
        raise RuntimeError("data-dependent branch")  # as dynamo reports what it cannot trace in one graph

    runtime._step = untraceable
    with pytest.raises(
        CompileError, match=r"--egbench-runtime compiled: compiling the decode step of LlamaForCausalLM failed: RuntimeError: data-dependent branch"
    ):
        runtime.prepare(PROMPT, STEPS)


def test_int8_weights_are_refused_by_the_compiled_runtimes_on_cuda_only():
    """Oracle: the capture failure measured on an H200 (bitsandbytes' int8 matmul asks the host
    about outliers during capture, docs/measurements/h200-s15-call1-decode-int8.log): refused for
    both compiled runtimes on CUDA, with the options named; eager int8, compiled int8 on the CPU
    (no capture) and compiled NF4 on CUDA are not refused."""
    from pytest_egbench.models.runtime import quant_unsupported

    for runtime in ("compiled", "compiled-tuned"):
        reason = quant_unsupported(runtime, "int8", "cuda")
        assert reason is not None and reason.startswith(f"--egbench-runtime {runtime} with --egbench-quant int8: ")
        assert "outliers.any()" in reason and "--egbench-runtime eager" in reason
    assert quant_unsupported("eager", "int8", "cuda") is None
    assert quant_unsupported("compiled", "int8", "cpu") is None
    assert all(quant_unsupported("compiled", quant, "cuda") is None for quant in ("nf4", "bf16", "fp16", "fp32"))


@pytest.mark.gpu
def test_compiled_runtime_refuses_a_model_with_int8_layers_on_cuda():
    """A model quantised to bitsandbytes int8 on CUDA is refused when the runtime is made, not after
    a minute of compiling and a failed capture; the eager runtime still runs it."""
    lm = dummy_llama("tiny", "int8", "cuda")
    for tuned in (False, True):
        with pytest.raises(RuntimeUnsupportedError, match=r"LlamaForCausalLM: --egbench-runtime compiled(-tuned)? with --egbench-quant int8"):
            CompiledLM(lm, tuned=tuned)
    first, _, _ = EagerLM(lm).prefill(input_ids=_prompt(lm).to("cuda"))
    assert first.shape == (1, 1)


def test_which_adapters_declare_which_runtimes_without_loading_a_model():
    from pytest_egbench.models.registry import adapter_class

    assert adapter_class("eventgpt").runtime_unsupported("compiled") is None
    assert "only the eager runtime" in adapter_class("qwen2_vl").runtime_unsupported("compiled-tuned")
    assert adapter_class("qwen2_vl").runtime_unsupported("eager") is None
    assert adapter_class("qwen2_vl").runtime_unsupported("graph") is None  # not a runtime: use_runtime's ValueError says so


def test_eager_runtime_compiles_nothing_and_attends_over_the_growing_cache(lm):
    eager = EagerLM(lm)
    assert eager.prepare(PROMPT, STEPS) is None and eager.compile_seconds is None
    # step i attends over the prompt, the i tokens decoded before it and its own
    assert eager.attended_positions(PROMPT, STEPS, None) == sum(PROMPT + i + 1 for i in range(STEPS)) / STEPS


def test_k_token_choices_and_truncation_match_eager_forwards(lm, compiled):
    """choices(ids) of k tokens is the greedy choice after each of them, as one eager forward
    over the same cache gives; truncate(n) makes the next write position n, so that feeding
    other tokens after a rollback reads as if the forgotten ones were never fed."""
    from pytest_egbench.metrics.speculative import greedy
    from pytest_egbench.models.generation import cache_kwargs

    ids = _prompt(lm)
    more = _prompt(lm, length=5, seed=3)
    other = _prompt(lm, length=3, seed=4)
    compiled.prefill(input_ids=ids)
    eager_cache = EagerLM(lm).prefill(input_ids=ids)[1]

    def eager_choices(tokens):
        out = lm(input_ids=tokens, **cache_kwargs(lm, eager_cache), use_cache=True)
        return greedy(out.logits)

    with torch.inference_mode():
        assert compiled.choices(more).tolist() == eager_choices(more).tolist()
        assert compiled.filled == PROMPT + 5
        compiled.truncate(PROMPT + 2)
        eager_cache.crop(PROMPT + 2 - eager_cache.get_seq_length())
        assert compiled.choices(other).tolist() == eager_choices(other).tolist()
    assert compiled.filled == PROMPT + 5
    with pytest.raises(ValueError, match="cannot truncate a cache of 42 filled positions to 43"):
        compiled.truncate(PROMPT + 6)
    with pytest.raises(ValueError, match="static KV cache holds 64 positions: 42 filled, no room for 23 more"):
        compiled.choices(_prompt(lm, length=23))


def test_prefill_runs_the_compiled_graph_once_the_cache_exists(lm):
    """The first prefill into a new static cache runs eagerly (transformers allocates the cache's
    tensors on their first write, which must not happen inside a graph); every later one runs the
    compiled prompt graph. A prompt with extra forward inputs runs eagerly."""
    runtime = CompiledLM(lm)
    calls = []
    compiled_prompt = runtime._prompt
    runtime._prompt = lambda embeds: calls.append(embeds.shape) or compiled_prompt(embeds)
    runtime.prefill(input_ids=_prompt(lm))
    assert calls == []
    runtime.prefill(input_ids=_prompt(lm, seed=1))
    assert calls == [torch.Size([1, PROMPT, lm.config.hidden_size])]
    runtime.prefill(input_ids=_prompt(lm, length=3 * CACHE_ROUNDING))  # a new, larger cache: eager again
    assert len(calls) == 1


def test_prepare_compiles_everything_the_rounds_run(lm):
    """`prepare` records prefill from token ids (embedded in inference mode); an adapter hands the
    rounds embeddings made outside it (its merged text and image embeddings). torch.compile guards
    on the dispatch keys, so those recompiled the prefill graph in the benchmark's first round,
    outside `compile_s`. Oracle: the runtime's contract, all compilation inside `prepare`."""
    from torch._dynamo.utils import counters

    runtime = CompiledLM(lm)
    runtime.prepare(PROMPT, STEPS)
    compiled = counters["stats"]["unique_graphs"]
    with torch.no_grad():  # as an adapter makes them: not inference tensors
        embeds = lm.get_input_embeddings()(_prompt(lm, seed=2))
    for _ in range(2):
        token, cache, _ = runtime.prefill(inputs_embeds=embeds)
        runtime.decode(token, cache, STEPS)
    assert counters["stats"]["unique_graphs"] == compiled


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_a_prompt_after_a_longer_text_reads_as_in_a_new_cache(device):
    """The static cache is not reset between prompts: the prompt's graph writes from position 0 and
    the positions a longer earlier text left past the prompt are masked. Oracle: the eager runtime
    on a new ``DynamicCache`` (tokens and the prompt's logits), for a second prompt shorter than the
    first text, and again after a rollback (``truncate``) of a longer one. On CUDA the calls replay
    captured graphs, one per prompt length and one per step length, captured once."""
    lm = dummy_llama("tiny", "fp32", device)
    runtime = CompiledLM(lm)
    runtime.prepare(PROMPT, STEPS)
    eager = EagerLM(lm)
    long, short = (_prompt(lm, length=n, seed=n).to(device) for n in (PROMPT, PROMPT - 20))
    first, cache, _ = runtime.prefill(input_ids=long)
    runtime.decode(first, cache, STEPS)  # the cache now holds PROMPT + STEPS positions of another text
    for _ in range(2):
        first_e, cache_e, logits_e = eager.prefill(input_ids=short)
        first_c, cache_c, logits_c = runtime.prefill(input_ids=short)
        torch.testing.assert_close(logits_c, logits_e, rtol=1e-4, atol=1e-4)
        assert runtime.decode(first_c, cache_c, STEPS).tolist() == eager.decode(first_e, cache_e, STEPS).tolist()
        assert int(cache_c.get_seq_length()) == PROMPT - 20 + STEPS
        runtime.choices(long[:, :4])  # four more positions, then forgotten again
        runtime.truncate(PROMPT - 20)
    if device == "cuda":
        # prefill of PROMPT (prepare) and of PROMPT - 20; the one-token step; the four-token step
        assert (len(runtime._prompt), len(runtime._step), len(runtime._multi)) == (2, 1, 1)
