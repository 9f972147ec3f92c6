"""SentencePiece-style BPE (GGUF ``tokenizer.ggml.model == "llama"``).

Spaces are written as ``▁`` (U+2581), optionally with one added in front of the text.
Encoding starts from single characters and repeatedly joins the adjacent pair whose
concatenation is a vocabulary piece with the highest score (leftmost on ties). A
character that ends up with no piece of its own is spelled as byte tokens ``<0xXX>``
(one per UTF-8 byte), or the unknown token if the vocabulary has no byte tokens.
"""

from __future__ import annotations

import heapq
import re

SPACE = "\u2581"  # ▁
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def byte_piece_value(piece: str) -> int | None:
    """``"<0x0A>"`` -> 10; None for other pieces."""
    m = _BYTE_PIECE.fullmatch(piece)
    return int(m.group(1), 16) if m else None


class SentencePieceEncoder:
    def __init__(self, pieces: dict[str, int], scores: list[float], byte_ids: dict[int, int], unk_id: int | None):
        self.pieces = pieces  # piece text -> id (normal pieces only)
        self.scores = scores  # by id
        self.byte_ids = byte_ids  # byte value -> id of its <0xXX> token
        self.unk_id = unk_id

    def encode(self, text: str) -> list[int]:
        """Ids for ``text``, which must already have spaces replaced by ``▁``."""
        ids: list[int] = []
        for piece in self._merge(text):
            tok = self.pieces.get(piece)
            if tok is not None:
                ids.append(tok)
            elif self.byte_ids:
                # Missing byte tokens would make the vocabulary unusable; report the byte.
                for b in piece.encode("utf-8"):
                    if b not in self.byte_ids:
                        raise KeyError(f"vocabulary has no byte token <0x{b:02X}>")
                    ids.append(self.byte_ids[b])
            elif self.unk_id is not None:
                ids.append(self.unk_id)
            else:
                raise KeyError(f"{piece!r} is not in the vocabulary, which has neither byte nor unknown tokens")
        return ids

    def _merge(self, text: str) -> list[str]:
        n = len(text)
        sym = list(text)
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        heap: list[tuple[float, int, str, str]] = []

        def push(i: int) -> None:
            j = nxt[i]
            if j < n:
                tok = self.pieces.get(sym[i] + sym[j])
                if tok is not None:
                    # heapq is a min-heap: negate the score so the best pair pops first.
                    heapq.heappush(heap, (-self.scores[tok], i, sym[i], sym[j]))

        for i in range(n - 1):
            push(i)
        while heap:
            _, i, left, right = heapq.heappop(heap)
            j = nxt[i] if sym[i] else n
            if j >= n or sym[i] != left or sym[j] != right:
                continue  # stale entry
            sym[i] = left + right
            sym[j] = ""
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            if prv[i] >= 0:
                push(prv[i])
            push(i)
        return [s for s in sym if s]
