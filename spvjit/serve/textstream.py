"""Generated tokens -> text pieces to send, with stop strings and per-token logprobs.

Text is decoded incrementally (complete UTF-8 characters only). Stop strings may span
tokens, so text that could still be the start of a stop string is held back until the
next token decides; when a stop string appears, the text before it is the last piece
and generation ends. Logprob entries wait with their text and go out with the piece
that carries it.
"""

from __future__ import annotations

import codecs

import numpy as np


def logprob_entry(tokenizer, logits: np.ndarray, token: int, top: int) -> dict:
    """{"token", "logprob", "bytes", "top": [(token text, logprob, bytes)]} of ``token``
    under softmax(logits) (float64 log-softmax)."""
    x = logits.astype(np.float64)
    m = x.max()
    lse = m + np.log(np.exp(x - m).sum())

    def one(t: int):
        b = tokenizer.token_to_bytes(int(t), special=True)
        return b.decode("utf-8", errors="replace"), float(x[t] - lse), list(b)

    text, lp, b = one(token)
    best = np.argsort(-x, kind="stable")[:top] if top else []
    return {"token": text, "logprob": lp, "bytes": b, "top": [one(t) for t in best]}


class TextStream:
    """``push(token)`` -> text safe to send now; ``stopped`` once a stop string showed up;
    ``finish()`` -> the rest. ``strip_space``: drop the space a SentencePiece vocabulary
    puts in front of the first word (chat replies), as ``spvjit run --chat`` does."""

    def __init__(self, tokenizer, stop: list[str], strip_space: bool = False):
        self.tokenizer = tokenizer
        self.stop = stop
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._strip = strip_space and tokenizer.model == "llama" and tokenizer.add_space_prefix
        self.text = ""          # everything decoded (up to a stop string, once found)
        self.sent = 0           # characters of text already returned
        self.stopped = False
        self._entries: list[dict] = []   # logprob entries not yet sent

    def push(self, token: int, entry: dict | None = None) -> tuple[str, list[dict]]:
        data = self.tokenizer.token_to_bytes(int(token), special=False)
        if self._strip and data:
            self._strip = False
            data = data[1:] if data.startswith(b" ") else data
        if entry is not None:
            self._entries.append(entry)
        self.text += self._utf8.decode(data)
        return self._take(final=False)

    def finish(self) -> tuple[str, list[dict]]:
        if not self.stopped:
            self.text += self._utf8.decode(b"", final=True)
        return self._take(final=True)

    def _take(self, final: bool) -> tuple[str, list[dict]]:
        if not self.stopped and self.stop:
            start = max(0, self.sent - max(len(s) for s in self.stop))
            hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True
        end = len(self.text)
        if not (final or self.stopped):
            end -= self._held_back()
        end = max(end, self.sent)
        piece = self.text[self.sent : end]
        self.sent = end
        entries = []
        if piece or final or self.stopped:
            entries, self._entries = self._entries, []
        return piece, entries

    def _held_back(self) -> int:
        """Length of the longest tail of text that starts some stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:k]):
                    best = k
                    break
        return best
