"""Server counters and the Prometheus text served at GET /metrics."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

WINDOW_S = 10.0   # decode tokens/s is measured over the steps of the last 10 seconds


class Metrics:
    def __init__(self, slots: int):
        self.slots = slots
        self._lock = threading.Lock()
        self._steps: deque[tuple[float, int, float]] = deque()   # (end time, tokens, seconds)
        self.requests = Counter()          # by outcome: stop, length, cancelled, error, rejected
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.steps = 0                     # decode steps (their rows: generated tokens - first tokens)
        self.decode_rows = 0
        self.queue_depth = 0
        self.active = 0

    def step(self, tokens: int, seconds: float) -> None:
        """A decode step made ``tokens`` tokens in ``seconds``."""
        now = time.monotonic()
        with self._lock:
            self._steps.append((now, tokens, seconds))
            self.generated_tokens += tokens
            self.decode_rows += tokens
            self.steps += 1
            self._trim(now)

    def first_token(self) -> None:
        """A prompt made its first token (not a decode step)."""
        with self._lock:
            self.generated_tokens += 1

    def _trim(self, now: float) -> None:
        while self._steps and self._steps[0][0] < now - WINDOW_S:
            self._steps.popleft()

    def decode_tps(self) -> tuple[float, float]:
        """(tokens per second of decoding time, tokens per second of wall time), both over
        the last WINDOW_S seconds: what one step achieves, and what the server delivered."""
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            tokens = sum(t for _, t, _ in self._steps)
            busy = sum(s for _, _, s in self._steps)
        return (tokens / busy if busy > 0 else 0.0), tokens / WINDOW_S

    def count(self, outcome: str, prompt_tokens: int = 0) -> None:
        with self._lock:
            self.requests[outcome] += 1
            self.prompt_tokens += prompt_tokens

    def prometheus(self) -> str:
        step_tps, wall_tps = self.decode_tps()
        with self._lock:
            requests = dict(self.requests)
            lines = [
                "# HELP spvjit_decode_tokens_per_second Tokens generated per second of decode steps (last 10 s).",
                "# TYPE spvjit_decode_tokens_per_second gauge",
                f"spvjit_decode_tokens_per_second {step_tps:.3f}",
                "# HELP spvjit_tokens_per_second Tokens generated per second of wall time (last 10 s).",
                "# TYPE spvjit_tokens_per_second gauge",
                f"spvjit_tokens_per_second {wall_tps:.3f}",
                "# HELP spvjit_queue_depth Requests waiting for a slot.",
                "# TYPE spvjit_queue_depth gauge",
                f"spvjit_queue_depth {self.queue_depth}",
                "# HELP spvjit_active_slots Sequences being decoded.",
                "# TYPE spvjit_active_slots gauge",
                f"spvjit_active_slots {self.active}",
                "# HELP spvjit_slots Sequences decoded together at most (--parallel).",
                "# TYPE spvjit_slots gauge",
                f"spvjit_slots {self.slots}",
                "# HELP spvjit_prompt_tokens_total Prompt tokens processed.",
                "# TYPE spvjit_prompt_tokens_total counter",
                f"spvjit_prompt_tokens_total {self.prompt_tokens}",
                "# HELP spvjit_generated_tokens_total Tokens generated.",
                "# TYPE spvjit_generated_tokens_total counter",
                f"spvjit_generated_tokens_total {self.generated_tokens}",
                "# HELP spvjit_decode_steps_total Batched decode steps (one token for every active sequence).",
                "# TYPE spvjit_decode_steps_total counter",
                f"spvjit_decode_steps_total {self.steps}",
                "# HELP spvjit_decode_rows_total Sequence rows over all decode steps (/ steps: mean batch size).",
                "# TYPE spvjit_decode_rows_total counter",
                f"spvjit_decode_rows_total {self.decode_rows}",
                "# HELP spvjit_requests_total Requests by outcome.",
                "# TYPE spvjit_requests_total counter",
            ]
        for outcome in ("stop", "length", "cancelled", "error", "rejected"):
            lines.append(f'spvjit_requests_total{{outcome="{outcome}"}} {requests.get(outcome, 0)}')
        return "\n".join(lines) + "\n"
