"""Pre-tokenizers for byte-level BPE: split text into words before BPE merges.

Each scheme named by ``tokenizer.ggml.pre`` is a list of regex stages. A stage splits each
piece from the previous stage into its matches *and* the unmatched text between them
(HF tokenizers' "isolated" split), so no character is ever dropped.

The published patterns use Unicode property classes (``\\p{L}`` letters, ``\\p{N}``
numbers) that Python's ``re`` lacks, and ``\\s`` there means the Unicode White_Space
property, which differs from Python's ``\\s`` (Python adds U+001C..U+001F). So patterns
are written here with ``\\p{L}``, ``\\p{N}``, ``\\s``, ``\\S`` placeholders and compiled
into ``re`` character classes built once from ``unicodedata`` categories. That avoids a
dependency on the third-party ``regex`` module.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

# The Unicode White_Space property (PropList.txt); stable since Unicode 6.
_WHITE_SPACE = (
    [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A)]
    + [(0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]
)

# GPT-2's split: contractions, letter runs, number runs, other-symbol runs (each with an
# optional leading space), then whitespace (a run not followed by a non-space keeps its
# last space for the next word).
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# Llama-3's split: case-insensitive contractions; a letter run may take one leading
# non-letter/non-digit that is not a newline; numbers in groups of up to 3; punctuation
# runs swallow trailing newlines; newline runs are their own words.
_LLAMA3_CONTRACTIONS = r"'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
_LLAMA3 = (
    _LLAMA3_CONTRACTIONS
    + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2: Llama-3's split with single digits.
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")

# tokenizer.ggml.pre -> regex stages. "smollm" (and the StarCoder family it comes from)
# isolates every digit first (HF's Digits(individual_digits=True)), then applies GPT-2's
# split. "default" is what llama.cpp's converter writes for an unrecognized BPE tokenizer;
# it gets GPT-2's split, which is what HF's ByteLevel pre-tokenizer does.
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "gpt2": (_GPT2,),
    "default": (_GPT2,),
    "smollm": (r"\p{N}", _GPT2),
    "llama-bpe": (_LLAMA3,),
    "llama3": (_LLAMA3,),
    "qwen2": (_QWEN2,),
}


@functools.lru_cache(maxsize=None)
def _category_ranges(prefix: str) -> tuple[tuple[int, int], ...]:
    """Code point ranges whose general category starts with ``prefix`` ("L", "N")."""
    ranges: list[tuple[int, int]] = []
    start = None
    category = unicodedata.category
    for cp in range(sys.maxunicode + 2):  # one past the end closes the last range
        inside = cp <= sys.maxunicode and category(chr(cp)).startswith(prefix)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            ranges.append((start, cp - 1))
            start = None
    return tuple(ranges)


def _class_body(ranges) -> str:
    """Ranges as the inside of a ``[...]`` class, every character escaped."""
    parts = []
    for lo, hi in ranges:
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
    return "".join(parts)


def translate(pattern: str) -> str:
    """Replace \\p{L}, \\p{N}, \\s, \\S in ``pattern`` by explicit ``re`` classes."""
    body = {
        r"\p{L}": _class_body(_category_ranges("L")),
        r"\p{N}": _class_body(_category_ranges("N")),
        r"\s": _class_body(_WHITE_SPACE),
    }
    out, i, in_class = [], 0, False
    while i < len(pattern):
        two, five = pattern[i : i + 2], pattern[i : i + 5]
        if five in body:
            out.append(body[five] if in_class else f"[{body[five]}]")
            i += 5
        elif two == r"\s":
            out.append(body[two] if in_class else f"[{body[two]}]")
            i += 2
        elif two == r"\S":
            if in_class:  # no pattern here needs a negated class inside a class
                raise ValueError(r"\S inside a character class is not supported")
            out.append("[^" + body[r"\s"] + "]")
            i += 2
        elif pattern[i] == "\\":
            out.append(two)  # some other escape: keep both characters
            i += 2
        else:
            if pattern[i] == "[":
                in_class = True
            elif pattern[i] == "]":
                in_class = False
            out.append(pattern[i])
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=None)
def _compiled(name: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(translate(p)) for p in PRE_TOKENIZERS[name])


def split_isolated(pattern: re.Pattern[str], text: str) -> list[str]:
    """Matches of ``pattern`` and the non-empty gaps between them, in order."""
    pieces, pos = [], 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            pieces.append(text[pos : m.start()])
        if m.end() > m.start():
            pieces.append(m.group())
        pos = m.end()
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces


def pretokenize(name: str, text: str) -> list[str]:
    """Split ``text`` into words with the scheme ``name`` (a key of PRE_TOKENIZERS)."""
    pieces = [text] if text else []
    for pattern in _compiled(name):
        pieces = [word for piece in pieces for word in split_isolated(pattern, piece)]
    return pieces
