"""The bundled LLaMA tokenizer against known LLaMA encodings and the prompt token counts of
docs/design.md#token-counts."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from pytest_egbench.models.tokenization import (  # noqa: E402
    DEFAULT_QUESTION,
    IMAGE_TOKEN,
    IMAGE_TOKEN_ID,
    TOKENIZER_FILE,
    VIDEO_TOKEN_ID,
    expand_placeholder,
    load_tokenizer,
)

# Encodings (with BOS) from llama-tokenizer-js 1.2.2's own test cases (llama-tokenizer.js,
# defaultTests), which were checked against Meta's SentencePiece model.
NPM_CASES = [
    ("grabbed", [1, 2646, 1327, 287]),
    (" grabbed", [1, 29871, 2646, 1327, 287]),
    ("           grabbed", [1, 9651, 2646, 1327, 287]),
    ("\n", [1, 29871, 13]),
    (" \n", [1, 259, 13]),
    ("\ttabs\t\t\t\tout here", [1, 29871, 12, 21175, 12, 12, 12, 12, 449, 1244]),
    ("ax\n####\nboo", [1, 4853, 13, 4136, 13, 833, 29877]),
    ("镇", [1, 29871, 30411]),
    ("🦙", [1, 29871, 243, 162, 169, 156]),
    ("🦙Ꙋ", [1, 29871, 243, 162, 169, 156, 237, 156, 141]),
    ("Ꙋ🦙", [1, 29871, 237, 156, 141, 243, 162, 169, 156]),
    ("Hello world!", [1, 15043, 3186, 29991]),  # the npm README
    ("Hello this is a test", [1, 15043, 445, 338, 263, 1243]),  # transformers' LlamaTokenizer docstring
]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.mark.parametrize(("text", "ids"), NPM_CASES)
def test_known_llama_encodings(tok, text, ids):
    assert tok(text).input_ids == ids
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_vocabulary_and_added_tokens(tok):
    assert len(tok) == 32002
    assert tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>", "<image>", "<video>"]) == [0, 1, 2, IMAGE_TOKEN_ID, VIDEO_TOKEN_ID]
    assert (IMAGE_TOKEN_ID, VIDEO_TOKEN_ID) == (32000, 32001)
    assert tok.bos_token_id == 1 and tok.eos_token_id == 2 and tok.pad_token_id == 0
    assert tok("<image><video>", add_special_tokens=False).input_ids == [32000, 32001]


def test_loader_is_cached_and_file_loads_as_llama_tokenizer(tok):
    from transformers import LlamaTokenizerFast

    assert load_tokenizer() is tok
    llama = LlamaTokenizerFast(tokenizer_file=str(TOKENIZER_FILE))
    text = f"USER: {IMAGE_TOKEN}\n{DEFAULT_QUESTION} ASSISTANT:"
    assert llama(text).input_ids == tok(text).input_ids


def test_placeholder_expansion_equals_whole_string_tokenisation(tok):
    """For an added token, piecewise tokenisation == tokenising the repeated-token string."""
    text = "USER: " + f"{IMAGE_TOKEN}\n" * 3 + f"{DEFAULT_QUESTION} ASSISTANT:"
    ids, positions = expand_placeholder(tok, text, IMAGE_TOKEN, [5, 5, 5], IMAGE_TOKEN_ID)
    whole = tok(text.replace(IMAGE_TOKEN, IMAGE_TOKEN * 5)).input_ids
    assert ids == whole
    assert positions == [i for i, t in enumerate(whole) if t == IMAGE_TOKEN_ID]


def test_placeholder_count_mismatch_raises(tok):
    with pytest.raises(ValueError, match="1 <image> placeholder"):
        expand_placeholder(tok, "a <image> b", IMAGE_TOKEN, [1, 1], IMAGE_TOKEN_ID)
