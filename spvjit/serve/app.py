"""The HTTP side: a Starlette app with OpenAI's routes over the batching engine.

POST /v1/chat/completions, POST /v1/completions (both with ``stream``: server-sent
events, one ``data: {json}`` per chunk, then ``data: [DONE]``), GET /v1/models,
GET /health, GET /metrics (Prometheus text). Every error is OpenAI's JSON error body.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from spvjit.models.llama import ModelError, render_chat

from . import protocol as P
from .engine import Engine, Job, QueueFull
from .protocol import APIError
from .textstream import TextStream

MAX_BODY = 4 * 2**20     # bytes of a request body
POLL_S = 0.25            # how often a non-streaming request checks that its client is still there
CHARS_PER_POSITION = 256  # a prompt longer than this many characters per context position cannot fit


class ServeState:
    """What the routes need: the engine, the tokenizer, the chat template, names, sizes."""

    def __init__(self, engine: Engine, tokenizer, chat_template: str | None, model_name: str):
        self.engine = engine
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.model_name = model_name
        self.max_ctx = engine.model.max_ctx
        self.n_vocab = engine.model.config.n_vocab
        self.created = int(time.time())


def error_response(e: APIError) -> JSONResponse:
    headers = {"Retry-After": "1"} if e.status == 429 else None
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


async def read_json(request: Request):
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
        raise APIError(f"the request body is larger than {MAX_BODY} bytes", status=413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise APIError(f"the request body is larger than {MAX_BODY} bytes", status=413)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:
        raise APIError(f"the request body is not valid JSON: {e}") from None


def _job(state: ServeState, rid: str, ids: list[int], params: P.GenParams, strip_space: bool) -> Job:
    if not ids:
        raise APIError("the prompt is empty (no tokens)", param="prompt")
    room = state.max_ctx - len(ids)
    if room < 1:
        raise APIError(f"the prompt has {len(ids)} tokens, which does not fit the context of {state.max_ctx} "
                       f"(with room for one generated token)", param="messages", code="context_length_exceeded")
    if params.max_tokens is not None and params.max_tokens > room:
        raise APIError(f"max_tokens is {params.max_tokens}, but the prompt ({len(ids)} tokens) leaves room for "
                       f"{room} in the context of {state.max_ctx}", param="max_tokens",
                       code="context_length_exceeded")
    text = TextStream(state.tokenizer, params.stop, strip_space=strip_space)
    return Job(rid, ids, params, params.max_tokens or room, text, asyncio.get_running_loop())


async def _encode(state: ServeState, text: str, param: str) -> list[int]:
    """Token ids of a prompt (special tokens written as text are parsed, as in spvjit run),
    in a worker thread so a long prompt does not stall the other requests' streams."""
    if len(text) > CHARS_PER_POSITION * state.max_ctx:   # cannot fit: refuse before the work
        raise APIError(f"the prompt has {len(text)} characters, far more than the context of {state.max_ctx} "
                       f"positions holds", param=param, code="context_length_exceeded")
    try:
        return await asyncio.to_thread(state.tokenizer.encode, text, parse_special=True)
    except (ModelError, ValueError) as e:
        raise APIError(f"cannot tokenize the prompt: {e}", param=param) from None


def _submit(state: ServeState, job: Job) -> None:
    try:
        state.engine.submit(job)
    except QueueFull as e:
        raise APIError(f"server busy: {e}; try again later", status=429, type="rate_limit_error") from None


def sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _collect(request: Request, state: ServeState, job: Job):
    """Events of a non-streaming job until it is done: (text, entries, finish, usage).
    The job is cancelled if the client disconnects."""
    pieces, entries = [], []
    try:
        while True:
            try:
                ev = await asyncio.wait_for(job.events.get(), POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    state.engine.cancel(job)
                    return None
                continue
            if ev[0] == "error":
                raise APIError(ev[1], status=500, type="server_error")
            pieces.append(ev[1])
            entries += ev[2]
            if ev[0] == "done":
                return "".join(pieces), entries, ev[3], ev[4]
    finally:
        state.engine.cancel(job)   # no-op once done


async def _stream(state: ServeState, job: Job, first: list[dict], chunk, final_obj: str):
    """Server-sent events: ``first`` chunks, then one chunk per text piece (``chunk(text,
    entries, finish)``), the usage chunk if asked for, then [DONE]. Leaving early (the
    client disconnected) cancels the job."""
    created = int(time.time())
    try:
        for obj in first:
            yield sse(obj)
        while True:
            ev = await job.events.get()
            if ev[0] == "error":
                yield sse(APIError(ev[1], status=500, type="server_error").body())
                return
            if ev[0] == "text":
                yield sse(chunk(ev[1], ev[2], None))
                continue
            _, rest, entries, finish, u = ev
            if rest or entries:
                yield sse(chunk(rest, entries, None))
            yield sse(chunk("", [], finish))
            if job.params.include_usage:
                yield sse(P.usage_chunk(job.rid, state.model_name, created, final_obj, u))
            yield "data: [DONE]\n\n"
            return
    finally:
        state.engine.cancel(job)


async def chat_completions(request: Request):
    state: ServeState = request.app.state.serve
    req = P.parse_chat(await read_json(request))
    if state.chat_template is None:
        raise APIError("this model has no chat template; use /v1/completions")
    try:
        text = render_chat(req.messages, state.chat_template)
    except (ModelError, ValueError) as e:
        raise APIError(f"cannot render the chat template: {e}", param="messages") from None
    ids = await _encode(state, text, "messages")
    rid = P.new_id("chatcmpl")
    job = _job(state, rid, ids, req.params, strip_space=True)
    _submit(state, job)
    name, lp = state.model_name, req.params.logprobs
    if req.params.stream:
        created = int(time.time())

        def chunk(text, entries, finish):
            delta = {"content": text} if text or finish is None else {}
            return P.chat_chunk(rid, name, created, delta, finish, P.chat_logprobs(entries) if lp else None)

        first = [P.chat_chunk(rid, name, created, {"role": "assistant", "content": ""})]
        return StreamingResponse(_stream(state, job, first, chunk, "chat.completion.chunk"),
                                 media_type="text/event-stream")
    out = await _collect(request, state, job)
    if out is None:
        return PlainTextResponse("", status_code=499)
    text, entries, finish, u = out
    return JSONResponse(P.chat_response(rid, name, text, finish, entries, lp, u))


async def completions(request: Request):
    state: ServeState = request.app.state.serve
    req = P.parse_completion(await read_json(request))
    if isinstance(req.prompt, str):
        ids = await _encode(state, req.prompt, "prompt")
        prompt_text = req.prompt
    else:
        if min(req.prompt) < 0 or max(req.prompt) >= state.n_vocab:
            raise APIError(f"'prompt' token ids must be in 0..{state.n_vocab - 1}", param="prompt")
        ids = list(req.prompt)
        prompt_text = state.tokenizer.decode(ids, special=True)
    rid = P.new_id("cmpl")
    job = _job(state, rid, ids, req.params, strip_space=False)
    _submit(state, job)
    name, lp = state.model_name, req.params.logprobs
    echo = prompt_text if req.params.echo else ""
    if req.params.stream:
        created = int(time.time())
        offset = [len(echo)]

        def chunk(text, entries, finish):
            logprobs = P.completion_logprobs(entries, offset[0]) if lp else None
            offset[0] += len(text)
            return P.completion_chunk(rid, name, created, text, finish, logprobs)

        first = [P.completion_chunk(rid, name, created, echo)] if echo else []
        return StreamingResponse(_stream(state, job, first, chunk, "text_completion"),
                                 media_type="text/event-stream")
    out = await _collect(request, state, job)
    if out is None:
        return PlainTextResponse("", status_code=499)
    text, entries, finish, u = out
    logprobs = P.completion_logprobs(entries, len(echo)) if lp else None
    return JSONResponse(P.completion_response(rid, name, echo + text, finish, logprobs, u))


async def models(request: Request):
    state: ServeState = request.app.state.serve
    return JSONResponse({"object": "list", "data": [
        {"id": state.model_name, "object": "model", "created": state.created, "owned_by": "spvjit",
         "meta": {"n_ctx": state.max_ctx, "n_vocab": state.n_vocab, "slots": state.engine.model.slots}}]})


async def health(request: Request):
    return JSONResponse({"status": "ok"})


async def metrics(request: Request):
    state: ServeState = request.app.state.serve
    return PlainTextResponse(state.engine.metrics.prometheus(), media_type="text/plain; version=0.0.4")


async def _api_error(request: Request, exc: APIError):
    return error_response(exc)


async def _http_error(request: Request, exc: HTTPException):
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return error_response(APIError(f"{request.method} {request.url.path}: {exc.detail}",
                                   status=exc.status_code, type=kind))


def create_app(state: ServeState) -> Starlette:
    @asynccontextmanager
    async def lifespan(app):
        state.engine.start()
        try:
            yield
        finally:
            await asyncio.to_thread(state.engine.stop)

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], exception_handlers={APIError: _api_error, HTTPException: _http_error}, lifespan=lifespan)
    app.state.serve = state
    return app
