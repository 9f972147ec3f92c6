"""`spvjit serve`: an OpenAI-compatible server (Starlette under uvicorn) for a llama GGUF."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time

import uvicorn

from spvjit.models.llama import ModelError, Tokenizer, default_model_path, load_gguf
from spvjit.models.llama.chat import chat_template_of, template_kind
from spvjit.models.llama.device_model import DeviceLlama
from spvjit.serve.app import ServeState, create_app
from spvjit.serve.engine import Engine

from .run import Progress, UsageError, add_model_args, one_line_errors

MAX_PARALLEL = 64


def add_parser(subparsers):
    p = subparsers.add_parser(
        "serve", help="serve a llama GGUF over an OpenAI-compatible HTTP API",
        description="Serve a llama-architecture GGUF model over the OpenAI API: POST "
                    "/v1/chat/completions and /v1/completions (streaming with \"stream\": true), "
                    "GET /v1/models, /health and /metrics. Up to --parallel requests decode together "
                    "in one batched step per token; more wait in a queue of --queue, beyond which "
                    "requests get 429. Ctrl-C finishes the requests in flight, then exits "
                    "(a second Ctrl-C exits at once).")
    add_model_args(p)   # MODEL.gguf, --ctx (per sequence here)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0: any free port)")
    p.add_argument("--parallel", type=int, default=4, metavar="N",
                   help=f"sequences decoded together, each with a KV cache of --ctx positions "
                        f"(default 4, at most {MAX_PARALLEL})")
    p.add_argument("--queue", type=int, default=64, metavar="Q",
                   help="requests that may wait for a free sequence slot before new ones get 429 (default 64)")
    p.add_argument("--name", default=None, help="model id reported by /v1/models and in responses "
                                                "(default: the GGUF file's name without .gguf)")
    return one_line_errors(p)


def check_args(args) -> None:
    if args.ctx < 2:
        raise UsageError(f"--ctx must be at least 2, got {args.ctx}")
    if not 1 <= args.parallel <= MAX_PARALLEL:
        raise UsageError(f"--parallel must be in 1..{MAX_PARALLEL}, got {args.parallel}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    if args.queue < 0:
        raise UsageError(f"--queue must be >= 0, got {args.queue}")


def listen(host: str, port: int) -> socket.socket:
    """The listening socket (so a busy port is one error line, and --port 0 works)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def run(args) -> int:
    try:
        check_args(args)
        sock = listen(args.host, args.port)
        return _serve(args, sock)
    except (ModelError, UsageError) as e:
        print(f"spvjit: error: {e}", file=sys.stderr)
        return 2


def warm_batches(model) -> None:
    """Compile the batched decode kernels and record the step for every batch size before
    the first requests need them."""
    for n in range(2, model.slots + 1):
        model.decode_batch([0] * n, [0] * n, list(range(n)))
    model.reset()


def _serve(args, sock: socket.socket) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    mf = load_gguf(args.model if args.model is not None else default_model_path())
    bar = Progress(f"loading {mf.path.name}")
    try:
        model = DeviceLlama(mf, max_ctx=args.ctx, progress=bar, slots=args.parallel)
    finally:
        bar.done()
    try:
        model.warmup()
        warm_batches(model)
        tokenizer = Tokenizer.from_gguf(mf)
        try:
            template = chat_template_of(mf)
            template_kind(template)
        except ModelError as e:
            print(f"spvjit serve: no chat completions for this model ({e})", file=sys.stderr)
            template = None
        name = args.name or mf.path.name.removesuffix(".gguf")
        state = ServeState(Engine(model, tokenizer, args.queue), tokenizer, template, name)
        host, port = sock.getsockname()[:2]
        print(f"spvjit serve: {name} loaded in {time.perf_counter() - t0:.1f} s; {args.parallel} sequences "
              f"of {model.max_ctx} positions; listening on http://{host}:{port}", file=sys.stderr, flush=True)
        config = uvicorn.Config(create_app(state), log_level="info", timeout_graceful_shutdown=None,
                                lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        model.close()
        sock.close()
    return 0
