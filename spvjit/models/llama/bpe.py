"""Byte-level BPE (GGUF ``tokenizer.ggml.model == "gpt2"``).

Text is UTF-8 encoded and each byte is written as one printable character (GPT-2's byte
alphabet, below), so the vocabulary and merge list are plain strings. A word is then
built up from single characters by applying merges, always the pair with the lowest
rank (earliest in ``tokenizer.ggml.merges``) first, leftmost first on ties.
"""

from __future__ import annotations

import heapq


def _byte_alphabet() -> tuple[dict[int, str], dict[str, int]]:
    """GPT-2's byte <-> character map.

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``)
    stand for themselves; the other 68 (controls, space, DEL, NBSP, soft hyphen) are given
    the characters U+0100, U+0101, ... in byte order. Space (0x20) thus becomes ``Ġ``
    (U+0120) and newline ``Ċ`` (U+010A).
    """
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    to_char, extra = {}, 0
    for b in range(256):
        if b in printable:
            to_char[b] = chr(b)
        else:
            to_char[b] = chr(256 + extra)
            extra += 1
    return to_char, {c: b for b, c in to_char.items()}


BYTE_TO_CHAR, CHAR_TO_BYTE = _byte_alphabet()


def bytes_to_text(data: bytes) -> str:
    """Raw bytes -> the byte-alphabet string BPE works on."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


def text_to_bytes(piece: str) -> bytes:
    """A vocabulary piece -> the raw bytes it stands for.

    Characters outside the byte alphabet (which a well-formed vocabulary does not have
    in normal tokens) are kept as their own UTF-8 encoding rather than dropped.
    """
    out = bytearray()
    for ch in piece:
        b = CHAR_TO_BYTE.get(ch)
        if b is None:
            out += ch.encode("utf-8")
        else:
            out.append(b)
    return bytes(out)


def parse_merges(merges: list[str]) -> dict[tuple[str, str], int]:
    """``["Ġ t", "Ġ a", ...]`` -> {("Ġ", "t"): 0, ("Ġ", "a"): 1, ...}."""
    ranks: dict[tuple[str, str], int] = {}
    for rank, line in enumerate(merges):
        left, sep, right = line.partition(" ")
        if sep and (left, right) not in ranks:
            ranks[(left, right)] = rank
    return ranks


class BytePairEncoder:
    """Splits byte-alphabet words into vocabulary pieces with a priority queue.

    Symbols form a linked list; the heap holds candidate merges keyed by (rank, start
    offset), and an entry is skipped when popped if either of its symbols has changed
    since it was pushed. That makes a word of n characters O(n log n).
    """

    def __init__(self, ranks: dict[tuple[str, str], int], cache_size: int = 1 << 16):
        self.ranks = ranks
        self._cache: dict[str, list[str]] = {}
        self._cache_size = cache_size

    def split(self, word: str) -> list[str]:
        """The pieces ``word`` merges into (their concatenation is ``word``)."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        pieces = self._merge(word)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # a crude bound; typical text re-uses few words
        self._cache[word] = pieces
        return pieces

    def _merge(self, word: str) -> list[str]:
        sym = list(word)  # sym[i] is the symbol starting at character offset i ("" once merged away)
        nxt = list(range(1, len(word) + 1))  # offset of the following symbol (len(word) = end)
        prv = list(range(-1, len(word) - 1))
        heap: list[tuple[int, int, str, str]] = []

        def push(i: int) -> None:
            j = nxt[i]
            if j < len(word):
                rank = self.ranks.get((sym[i], sym[j]))
                if rank is not None:
                    heapq.heappush(heap, (rank, i, sym[i], sym[j]))

        for i in range(len(word) - 1):
            push(i)
        while heap:
            _, i, left, right = heapq.heappop(heap)
            j = nxt[i] if sym[i] else len(word)
            if j >= len(word) or sym[i] != left or sym[j] != right:
                continue  # stale: one side was merged into something else meanwhile
            sym[i] = left + right
            sym[j] = ""
            nxt[i] = nxt[j]
            if nxt[j] < len(word):
                prv[nxt[j]] = i
            if prv[i] >= 0:
                push(prv[i])
            push(i)
        return [s for s in sym if s]
