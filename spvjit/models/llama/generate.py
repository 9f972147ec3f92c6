"""Text generation on the device: prompt processing, then one token at a time.

``generate`` streams text through a callback as tokens come out (complete UTF-8
characters only, via the tokenizer's StreamDecoder), stops at an end-of-generation token
(``tokenizer.eog_ids``: eos, eot, eom and the end-of-turn markers llama.cpp stops at, see
eog.py), at ``n`` tokens or when the context is full, and stops cleanly on Ctrl-C: the tokens and timings so far are
returned either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .sampling import Sampler
from .tokenizer import Tokenizer


@dataclass
class GenerationStats:
    load_s: float = 0.0
    prompt_tokens: int = 0
    prompt_s: float = 0.0
    gen_tokens: int = 0          # tokens produced (the first comes from the prompt's logits)
    gen_s: float = 0.0           # time of the single-token forward passes after the prompt
    decode_steps: int = 0        # those forward passes
    stop_reason: str = ""        # "length", "eos" (any end-of-generation token), "context", "interrupted"
    tokens: list[int] = field(default_factory=list)

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def gen_tps(self) -> float:
        return self.decode_steps / self.gen_s if self.gen_s > 0 else 0.0

    def summary(self) -> list[str]:
        lines = [f"load time:   {self.load_s:8.2f} s"]
        lines.append(f"prompt:      {self.prompt_tokens:5d} tokens in {self.prompt_s:7.2f} s  "
                     f"({self.prompt_tps:7.2f} tokens/s)")
        lines.append(f"generation:  {self.gen_tokens:5d} tokens, {self.decode_steps} steps in {self.gen_s:7.2f} s  "
                     f"({self.gen_tps:7.2f} tokens/s)")
        if self.stop_reason:
            lines.append(f"stopped:     {self.stop_reason}")
        return lines


def generate(model, tokenizer: Tokenizer, prompt_ids: list[int], n: int, sampler: Sampler,
             on_text: Callable[[str], None] | None = None, stats: GenerationStats | None = None,
             stop_at_eos: bool = True) -> GenerationStats:
    """Generate up to ``n`` tokens after ``prompt_ids`` with ``model`` (a DeviceLlama, or
    anything with ``forward``, ``forward_argmax``, ``max_ctx`` and ``config``)."""
    stats = stats or GenerationStats()
    stats.prompt_tokens = len(prompt_ids)
    decoder = tokenizer.stream_decoder(special=False)
    stop_ids = tokenizer.eog_ids
    emit = on_text or (lambda _text: None)

    def next_token(tokens, pos):
        if sampler.greedy and hasattr(model, "forward_argmax"):
            return model.forward_argmax(tokens, pos)
        return sampler.sample(model.forward(tokens, pos))

    if n <= 0:
        stats.stop_reason = "length"
        return stats
    t_prompt = time.perf_counter()
    t_gen = None
    try:
        tok = next_token(prompt_ids, 0)
        stats.prompt_s = time.perf_counter() - t_prompt
        pos = len(prompt_ids)
        t_gen = time.perf_counter()
        while True:
            stats.tokens.append(tok)
            stats.gen_tokens += 1
            if stop_at_eos and tok in stop_ids:
                stats.stop_reason = "eos"
                break
            emit(decoder.push(tok))
            if stats.gen_tokens >= n:
                stats.stop_reason = "length"
                break
            if pos >= model.max_ctx:
                stats.stop_reason = "context"
                break
            tok = next_token([tok], pos)
            pos += 1
            stats.decode_steps += 1
            stats.gen_s = time.perf_counter() - t_gen
    except KeyboardInterrupt:
        stats.stop_reason = "interrupted"
        if t_gen is None:  # still in the prompt: report how long it ran, no rate
            stats.prompt_s, stats.prompt_tokens = time.perf_counter() - t_prompt, 0
    emit(decoder.flush())
    return stats
