#!/usr/bin/env python3
"""Writes the Hugging Face tokenizer.json that tokenises exactly as llama.cpp does for a GGUF model.

    python3 scripts/export-tokenizer.py MODEL.gguf OUT.json

`ponder --backend remote --tokenizer OUT.json` then tokenises on the client instead of asking the
server's /tokenize for every node (and checks at connect time that both agree). Standard library
only: the GGUF metadata is read here (the tensors are never touched).

What llama.cpp does, and so what this writes (src/llama-vocab.cpp, llm_tokenizer_bpe):
- the vocabulary and merges of the GGUF (`tokenizer.ggml.tokens`, `.merges`), as a byte-level BPE;
- every control, user-defined and unknown token (`tokenizer.ggml.token_type` 3, 4, 2) as an added
  token, matched in the text before anything else (llama.cpp's parse_special);
- the pre-tokenizer regexes llama.cpp uses for the model's `tokenizer.ggml.pre`, each splitting
  the pieces of the one before, then the byte-to-unicode mapping;
- BOS/EOS added when the model says so (`tokenizer.ggml.add_bos_token`, `.add_eos_token`), which
  is what `add_special` means to llama-server's /tokenize.

Only byte-level BPE vocabularies (`tokenizer.ggml.model` = gpt2) with a pre-tokenizer listed in
PRE_TOKENIZERS are supported; anything else is refused with a message, never approximated.
"""

import json
import mmap
import struct
import sys

# llama.cpp's regexes per `tokenizer.ggml.pre` (llm_tokenizer_bpe's constructor), and its default
# for add_bos when the GGUF does not say. Each one is checked token for token against llama-server
# by tests/remote.rs; add a type only with such a check.
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
QWEN2_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = {
    # SmolLM, SmolLM2: digits one by one, then GPT-2's split.
    "smollm": {"regexes": [r"\p{N}", GPT2_REGEX], "add_bos": False},
    # Qwen2, Qwen2.5 (and their coders).
    "qwen2": {"regexes": [QWEN2_REGEX], "add_bos": False},
}

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 2, 3, 4


def fail(message):
    print(f"export-tokenizer: {message}", file=sys.stderr)
    sys.exit(1)


class GgufError(Exception):
    pass


def read_metadata(path):
    """The key/value metadata of a GGUF file (v2 or v3, little-endian), without its tensors."""
    with open(path, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # only the metadata is read
        except ValueError as e:  # an empty file
            raise GgufError(str(e)) from e
    if data[:4] != b"GGUF" or len(data) < 24:
        raise GgufError("it does not start with the bytes GGUF")
    version, _tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    if version not in (2, 3):
        raise GgufError(f"GGUF version {version} is not 2 or 3")
    pos = 24
    scalars = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = data[pos : pos + n].decode("utf-8")
        pos += n
        return s

    def value(t):
        nonlocal pos
        if t in scalars:
            return take(scalars[t])
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            if et in scalars:
                fmt = scalars[et]
                size = struct.calcsize(fmt)
                items = list(struct.unpack_from(f"<{n}{fmt[1]}", data, pos))
                pos += n * size
                return items
            return [value(et) for _ in range(n)]
        raise GgufError(f"unknown value type {t}")

    meta = {}
    try:
        for _ in range(n_kv):
            key = string()
            meta[key] = value(take("<I"))
    except (struct.error, UnicodeDecodeError) as e:
        raise GgufError(f"its metadata is cut short or malformed ({e})") from e
    return meta


def export(model_path):
    try:
        meta = read_metadata(model_path)
    except FileNotFoundError:
        fail(f"{model_path} not found; give the GGUF file the server loaded")
    except (OSError, GgufError) as e:
        fail(f"{model_path} is not a readable GGUF file: {e}")

    kind = meta.get("tokenizer.ggml.model")
    pre = meta.get("tokenizer.ggml.pre", "default")
    if kind != "gpt2":
        fail(
            f"{model_path} has a {kind!r} tokenizer; only byte-level BPE ('gpt2', e.g. SmolLM2, "
            "Qwen2.5) can be exported. Run without --tokenizer: the server's /tokenize is used"
        )
    if pre not in PRE_TOKENIZERS:
        fail(
            f"{model_path} uses the pre-tokenizer {pre!r}, which this script does not know "
            f"(known: {', '.join(sorted(PRE_TOKENIZERS))}). Run without --tokenizer: the server's "
            "/tokenize is used"
        )
    spec = PRE_TOKENIZERS[pre]

    tokens = meta.get("tokenizer.ggml.tokens")
    types = meta.get("tokenizer.ggml.token_type")
    merges = meta.get("tokenizer.ggml.merges")
    if not tokens or merges is None:
        fail(f"{model_path} has no tokenizer.ggml.tokens or .merges")
    if types is None:
        types = [TOKEN_NORMAL] * len(tokens)

    vocab = {}
    for i, t in enumerate(tokens):
        if t in vocab:
            fail(f"{model_path}: token {t!r} appears twice (ids {vocab[t]} and {i}); a tokenizer.json cannot say that")
        vocab[t] = i

    added = [
        {
            "id": i,
            "content": t,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": types[i] != TOKEN_USER_DEFINED,
        }
        for i, t in enumerate(tokens)
        if types[i] in (TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED)
    ]

    add_bos = meta.get("tokenizer.ggml.add_bos_token", spec["add_bos"])
    add_eos = meta.get("tokenizer.ggml.add_eos_token", False)
    single, special = [], {}
    for add, key in ((add_bos, "bos"), (None, None), (add_eos, "eos")):
        if key is None:
            single.append({"Sequence": {"id": "A", "type_id": 0}})
            continue
        if not add:
            continue
        tid = meta.get(f"tokenizer.ggml.{key}_token_id")
        if tid is None:
            fail(f"{model_path} asks for a {key.upper()} token but names none")
        text = tokens[tid]
        single.append({"SpecialToken": {"id": text, "type_id": 0}})
        special[text] = {"id": text, "ids": [int(tid)], "tokens": [text]}
    post = None
    if special:
        post = {"type": "TemplateProcessing", "single": single, "pair": single, "special_tokens": special}

    splits = [
        {"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False}
        for r in spec["regexes"]
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": splits + [byte_level]},
        "post_processor": post,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [m.split(" ", 1) for m in merges],
        },
    }


def main():
    if len(sys.argv) != 3:
        fail("usage: export-tokenizer.py MODEL.gguf OUT.json")
    tokenizer = export(sys.argv[1])
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        json.dump(tokenizer, out, ensure_ascii=False)
    print(
        f"export-tokenizer: {sys.argv[2]}: {len(tokenizer['model']['vocab'])} tokens, "
        f"{len(tokenizer['model']['merges'])} merges, {len(tokenizer['added_tokens'])} special",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
