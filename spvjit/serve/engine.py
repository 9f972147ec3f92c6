"""Continuous batching: one thread owns the model and decodes every active sequence in
one batched step per token.

Requests wait in a bounded queue (``QueueFull`` past it: the app answers 429). Between
two steps - at a token boundary - the engine drops cancelled sequences (their slot is
free for the next step), takes one waiting request into a free slot and runs its prompt,
then runs one ``decode_batch`` over all active sequences. Events go back to each
request's asyncio queue through its event loop: ("text", piece, logprob entries) and
finally ("done", rest, entries, finish_reason, usage) or ("error", message).

The model is only touched from this thread (Vulkan submissions, the recorded graphs).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from spvjit.models.llama import Sampler

from .metrics import Metrics
from .protocol import GenParams, usage
from .textstream import TextStream, logprob_entry

log = logging.getLogger("spvjit.serve")


class QueueFull(Exception):
    pass


@dataclass
class Job:
    """One request inside the engine."""

    rid: str
    prompt: list[int]
    params: GenParams
    max_tokens: int
    text: TextStream
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    done: bool = False
    slot: int = -1
    pos: int = 0              # where the next token goes
    token: int = -1           # the last token chosen (the next step's input)
    n_gen: int = 0
    sampler: Sampler | None = None
    t_submit: float = field(default_factory=time.perf_counter)
    t_start: float = 0.0      # taken into a slot
    t_first: float = 0.0      # first token out (end of the prompt)

    def emit(self, *event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:   # the loop is closed: nobody listens any more
            self.cancelled = True


class Engine:
    def __init__(self, model, tokenizer, max_queue: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.max_queue = max_queue
        self.eos = model.config.eos_token_id
        self.metrics = Metrics(model.slots)
        self._waiting: deque[Job] = deque()
        self._active: list[Job] = []
        self._free = list(range(model.slots - 1, -1, -1))
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="spvjit-engine", daemon=True)

    # -- called from the event loop --------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if len(self._waiting) - len(self._free) >= self.max_queue:   # requests beyond the free slots
                self.metrics.count("rejected")
                raise QueueFull(f"all {self.model.slots} slots are busy and {len(self._waiting)} requests wait")
            job.sampler = None if job.params.greedy else Sampler(
                job.params.temperature, job.params.top_k, job.params.top_p, job.params.seed)
            self._waiting.append(job)
            self.metrics.queue_depth = len(self._waiting)
            self._cv.notify()

    def cancel(self, job: Job) -> None:
        """The client went away: the job's slot is freed at the next token boundary."""
        if not job.done:
            job.cancelled = True
            with self._cv:
                self._cv.notify()

    def stop(self) -> None:
        """Stop after the current step; jobs still there are dropped (by then the HTTP
        server has drained the connections that wanted them)."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join()

    # -- the engine thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not (self._waiting or self._active or self._stopping):
                    self._cv.wait()
                if self._stopping:
                    for job in list(self._waiting) + self._active:
                        job.emit("error", "the server is shutting down")
                    return
                self._drop_cancelled()
                job = None
                if self._waiting and self._free:
                    job = self._waiting.popleft()
                    job.slot = self._free.pop()
                self.metrics.queue_depth = len(self._waiting)
            if job is not None:
                self._guard([job], self._prefill, job)
            if self._active:
                self._guard(list(self._active), self._step)
            self.metrics.active = len(self._active)

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._waiting if j.cancelled]:
            self._waiting.remove(job)
            self._end(job, "cancelled")
        for job in [j for j in self._active if j.cancelled]:
            self._end(job, "cancelled")

    def _guard(self, jobs: list[Job], fn, *args) -> None:
        """Run a model call; if it fails, the jobs it served fail, the server goes on."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - report to the clients, keep serving
            log.exception("generation failed")
            for job in jobs:
                if not job.done:
                    job.emit("error", f"generation failed: {e}")
                    self._end(job, "error")

    def _prefill(self, job: Job) -> None:
        job.t_start = time.perf_counter()
        best, logits = self.model.forward_both(job.prompt, 0, slot=job.slot)
        job.pos = len(job.prompt)
        job.t_first = time.perf_counter()
        self._active.append(job)
        self.metrics.first_token()
        self._accept(job, int(best), logits)

    def _step(self) -> None:
        rows = list(self._active)
        need_logits = any(j.sampler is not None or j.params.logprobs for j in rows)
        t0 = time.perf_counter()
        best, logits = self.model.decode_batch([j.token for j in rows], [j.pos for j in rows],
                                               [j.slot for j in rows], logits=need_logits)
        self.metrics.step(len(rows), time.perf_counter() - t0)
        for r, job in enumerate(rows):
            job.pos += 1
            self._accept(job, int(best[r]), logits[r] if need_logits else None)

    def _accept(self, job: Job, best: int, logits) -> None:
        """The token chosen after job's last position: send its text, or finish."""
        tok = best if job.sampler is None else job.sampler.sample(logits)
        job.token = tok
        job.n_gen += 1
        if tok == self.eos:
            return self._finish(job, "stop")
        entry = logprob_entry(self.tokenizer, logits, tok, job.params.top_logprobs) if job.params.logprobs else None
        piece, entries = job.text.push(tok, entry)
        if piece or entries:
            job.emit("text", piece, entries)
        if job.text.stopped:
            self._finish(job, "stop")
        elif job.n_gen >= job.max_tokens or job.pos >= self.model.max_ctx:
            self._finish(job, "length")

    def _finish(self, job: Job, reason: str) -> None:
        rest, entries = job.text.finish()
        job.emit("done", rest, entries, reason, usage(len(job.prompt), job.n_gen))
        self._end(job, reason)

    def _end(self, job: Job, outcome: str) -> None:
        job.done = True
        if job in self._active:
            self._active.remove(job)
        if job.slot >= 0:
            self._free.append(job.slot)
            job.slot = -1
        self.metrics.count(outcome, len(job.prompt) if job.t_start else 0)
        now = time.perf_counter()
        if job.t_start:
            decode_s = now - job.t_first
            rate = (job.n_gen - 1) / decode_s if job.n_gen > 1 and decode_s > 0 else 0.0
            log.info("%s %s: prompt %d tokens, %d generated; queued %.3f s, prompt %.3f s, "
                     "decode %.3f s (%.1f tokens/s)", job.rid, outcome, len(job.prompt), job.n_gen,
                     job.t_start - job.t_submit, job.t_first - job.t_start, decode_s, rate)
        else:
            log.info("%s %s while queued (%.3f s)", job.rid, outcome, now - job.t_submit)
