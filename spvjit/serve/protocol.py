"""The OpenAI request and response formats: validation of request bodies, and the JSON
objects (completions, chunks, errors) sent back.

Requests are validated field by field against the types the OpenAI API documents;
unknown fields are ignored (clients send extras), known fields of the wrong type or out
of range raise :class:`APIError`, which the app turns into a 400 with OpenAI's error
body: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

MAX_STOP = 4            # stop strings per request (OpenAI's limit)
MAX_STOP_CHARS = 256    # characters per stop string
MAX_TOP_LOGPROBS = 20   # chat's top_logprobs (OpenAI's limit); completions' logprobs: 5


class APIError(Exception):
    """An error answered with an OpenAI-style JSON body."""

    def __init__(self, message: str, status: int = 400, param: str | None = None,
                 type: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.message, self.status, self.param, self.type, self.code = message, status, param, type, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class GenParams:
    """What the engine needs to know about one request, validated."""

    max_tokens: int | None = None     # None: up to the end of the context
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    stream: bool = False
    include_usage: bool = False
    echo: bool = False                # completions only

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


@dataclass
class ChatRequest:
    messages: list[dict]
    params: GenParams


@dataclass
class CompletionRequest:
    prompt: str | list[int]
    params: GenParams


# -- field checks ------------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _get(body: dict, name: str, check, what: str, default=None):
    """body[name] if present and not null, else default; APIError naming the field if
    ``check`` fails."""
    v = body.get(name)
    if v is None:
        return default
    if not check(v):
        raise APIError(f"'{name}' must be {what}, got {_show(v)}", param=name)
    return v


def _show(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _params(body: dict, chat: bool) -> GenParams:
    p = GenParams()
    p.temperature = float(_get(body, "temperature", lambda v: _is_num(v) and 0 <= v <= 2, "a number in [0, 2]", 1.0))
    p.top_p = float(_get(body, "top_p", lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]", 1.0))
    p.top_k = _get(body, "top_k", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: no limit)", 0)
    p.seed = _get(body, "seed", _is_int, "an integer")
    for name in ("max_tokens",) + (("max_completion_tokens",) if chat else ()):
        v = _get(body, name, _is_int, "an integer")
        if v is not None:
            if v < 1:
                raise APIError(f"'{name}' must be at least 1, got {v}", param=name)
            p.max_tokens = v
    stop = _get(body, "stop", lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)),
                "a string or a list of strings")
    stop = [stop] if isinstance(stop, str) else (stop or [])
    if len(stop) > MAX_STOP:
        raise APIError(f"'stop' takes at most {MAX_STOP} strings, got {len(stop)}", param="stop")
    if any(len(s) > MAX_STOP_CHARS for s in stop):
        raise APIError(f"'stop' strings must be at most {MAX_STOP_CHARS} characters", param="stop")
    p.stop = [s for s in stop if s]
    p.stream = _get(body, "stream", lambda v: isinstance(v, bool), "a boolean", False)
    opts = _get(body, "stream_options", lambda v: isinstance(v, dict), "an object", {})
    p.include_usage = _get(opts, "include_usage", lambda v: isinstance(v, bool), "a boolean", False)
    n = _get(body, "n", _is_int, "an integer", 1)
    if n != 1:
        raise APIError(f"'n' must be 1 (one choice per request), got {n}", param="n")
    for name in ("presence_penalty", "frequency_penalty"):
        v = _get(body, name, lambda v: _is_num(v) and -2 <= v <= 2, "a number in [-2, 2]", 0)
        if v != 0:
            raise APIError(f"'{name}' is not supported (only 0)", param=name)
    _get(body, "model", lambda v: isinstance(v, str), "a string")
    _get(body, "user", lambda v: isinstance(v, str), "a string")
    if chat:
        p.logprobs = _get(body, "logprobs", lambda v: isinstance(v, bool), "a boolean", False)
        p.top_logprobs = _get(body, "top_logprobs", lambda v: _is_int(v) and 0 <= v <= MAX_TOP_LOGPROBS,
                              f"an integer in [0, {MAX_TOP_LOGPROBS}]", 0)
        if p.top_logprobs and not p.logprobs:
            raise APIError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    else:
        lp = _get(body, "logprobs", lambda v: _is_int(v) and 0 <= v <= 5, "an integer in [0, 5]")
        p.logprobs, p.top_logprobs = lp is not None, lp or 0
        p.echo = _get(body, "echo", lambda v: isinstance(v, bool), "a boolean", False)
    return p


def _content(msg: dict, i: int) -> str:
    c = msg.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):   # content parts: only text
        out = []
        for j, part in enumerate(c):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise APIError(f"messages[{i}].content[{j}] must be a text part {{'type': 'text', 'text': ...}}",
                               param="messages")
            out.append(part["text"])
        return "".join(out)
    raise APIError(f"messages[{i}].content must be a string or a list of text parts", param="messages")


def parse_chat(body) -> ChatRequest:
    if not isinstance(body, dict):
        raise APIError("the request body must be a JSON object")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError("'messages' must be a non-empty list of {'role', 'content'} objects", param="messages")
    messages = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise APIError(f"messages[{i}] must be an object with a string 'role'", param="messages")
        messages.append({"role": m["role"], "content": _content(m, i)})
    return ChatRequest(messages, _params(body, chat=True))


def parse_completion(body) -> CompletionRequest:
    if not isinstance(body, dict):
        raise APIError("the request body must be a JSON object")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    ok = isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt))
    if not ok:
        raise APIError("'prompt' must be a string (or one string in a list, or a list of token ids)", param="prompt")
    return CompletionRequest(prompt, _params(body, chat=False))


# -- responses ------------------------------------------------------------------------

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_logprobs(entries: list[dict]) -> dict:
    """Chat's logprobs object from the engine's per-token entries."""
    return {"content": [{"token": e["token"], "logprob": e["logprob"], "bytes": e["bytes"],
                         "top_logprobs": [{"token": t, "logprob": lp, "bytes": b} for t, lp, b in e["top"]]}
                        for e in entries]}


def completion_logprobs(entries: list[dict], offset: int) -> dict:
    """Completions' (legacy) logprobs object; ``offset``: characters of text before the first."""
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(e["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t: lp for t, lp, _ in e["top"]} for e in entries], "text_offset": offsets}


def chat_response(rid: str, model: str, text: str, finish: str, entries, want_logprobs: bool, u: dict) -> dict:
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": chat_logprobs(entries) if want_logprobs else None, "finish_reason": finish}],
            "usage": u}


def chat_chunk(rid: str, model: str, created: int, delta: dict, finish: str | None = None,
               logprobs: dict | None = None) -> dict:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}


def completion_response(rid: str, model: str, text: str, finish: str, logprobs: dict | None, u: dict) -> dict:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}], "usage": u}


def completion_chunk(rid: str, model: str, created: int, text: str, finish: str | None = None,
                     logprobs: dict | None = None) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}]}


def usage_chunk(rid: str, model: str, created: int, obj: str, u: dict) -> dict:
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [], "usage": u}
