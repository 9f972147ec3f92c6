"""Picking the next token from logits: greedy, or top-k -> top-p -> temperature sampling.

Order of operations (as in llama.cpp's default chain): keep the ``top_k`` most likely
tokens, then the smallest prefix of those (most likely first) whose probability,
renormalized over the top-k survivors, reaches ``top_p``, then sample from
softmax(logits / temperature) over what is left. The cuts use the untempered
distribution, so temperature only reshapes the choice among the survivors.
``top_k=0`` and ``top_p=1`` disable the respective cut; temperature 0 (or top_k 1) is
greedy argmax.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


class Sampler:
    def __init__(self, temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, seed: int | None = None):
        if not isinstance(temperature, numbers.Real) or math.isnan(temperature) or temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 = no limit), got {top_k!r}")
        if not isinstance(top_p, numbers.Real) or not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    def candidates(self, logits: np.ndarray) -> np.ndarray:
        """Token ids that survive top-k then top-p, most likely first (ties: lower id first)."""
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)
        order = np.argsort(-logits, kind="stable")
        if self.top_k:
            order = order[: self.top_k]
        if self.top_p < 1.0:
            p = _softmax(logits[order])
            # Keep token i if the mass before it is still below top_p: the smallest prefix
            # whose total reaches top_p (always at least one token).
            before = np.cumsum(p) - p
            order = order[before < self.top_p]
        return order

    def sample(self, logits: np.ndarray) -> int:
        """One token id drawn from ``logits`` (a 1-D array over the vocabulary)."""
        logits = np.asarray(logits).reshape(-1)
        if logits.size == 0:
            raise ValueError("logits is empty")
        if np.isnan(logits).any():
            from .errors import ModelError  # a ValueError: one line in the CLI, not a traceback
            raise ModelError("logits contain NaN: the model's weights or activations are not finite")
        if self.greedy:
            return int(np.argmax(logits))
        keep = self.candidates(logits)
        p = _softmax(logits[keep].astype(np.float64) / self.temperature)
        return int(keep[self.rng.choice(keep.size, p=p)])
