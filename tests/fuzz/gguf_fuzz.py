"""The GGUF fuzzer's engine: named mutants of a tiny model, and one checked run of each.

A case is ``(family, index)``:

* ``doc``: the index-th deterministic document mutation (a key of every other type for
  every key the runner reads, hostile hyperparameters, retyped/misplaced/reshaped tensors);
* ``cut``: truncation at the index-th structural boundary (or a byte either side);
* ``huge``: the index-th (count/length/dimension/type/offset field, hostile value) pair;
* ``flip``: random byte edits seeded by index;
* ``combo``: a random document mutation, then a random huge value or byte flip.

:func:`run_case` opens the mutant the way ``spvjit run`` would (load, tokenizer, chat
template, an embedding lookup and one reference forward step for files that load) and
classifies what happened. A rejection must be one :class:`ModelError` line that starts
with the file's name; anything else raised is a ``traceback``. Each case runs under an
alarm (``hang``) and a cap on the process's data size (``memory``), and its peak resident
memory above the level before it is measured by resetting the kernel's high-water mark
(``/proc/self/clear_refs``), so it can be compared with the file's size.
"""

from __future__ import annotations

import os
import random
import re
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .gguf_mutations import (KV, VT, Encoded, doc_mutations, flips, huge_fields, read_doc, serialize, set_field,
                             truncations)

FAMILIES = ("doc", "cut", "huge", "flip", "combo")
# Two seeds: the tokenizers take different paths through the metadata (SentencePiece reads
# scores, byte-level BPE reads merges and the pre-tokenizer).
SEEDS = ("spm", "bpe")
# Larger than the test suite's tiny model, so that the memory bound (2x the file size) is
# well above the kernel's page-granular accounting: about 1.3 MB.
FUZZ_HPARAMS = dict(n_embd=128, n_ff=1024)
BPE_MERGES = ["l l", "h e", "\u0120 he", "ll o", "he llo", "\u0120 w", "o r", "\u0120w or", "l d", "a a",
              "\u0120he llo"]
TIME_LIMIT_S = 10
MEMORY_SLACK = 512 << 20  # data-size cap above the level at the start of a case
# Below a few hundred KiB, resident memory says little about a file: it is counted in pages,
# a fault on a mapped file maps up to 16 neighbouring pages at once (the kernel's
# fault-around), and Python's allocator takes memory in 256 KiB arenas. The bound is 2x
# the file size above this allowance (a 7 KB truncated header was seen to cost 94 KB).
PAGE_ALLOWANCE = 256 << 10


def write_seed(kind: str, directory: Path) -> Path:
    """The tiny model with a SentencePiece ("spm") or byte-level BPE ("bpe") vocabulary."""
    from llama.conftest import write_tiny_gguf  # tests/ is on sys.path (pytest, scripts/fuzz-gguf)

    path = Path(directory) / f"seed-{kind}.gguf"
    if kind == "spm":
        return write_tiny_gguf(path, hparams=FUZZ_HPARAMS)
    write_tiny_gguf(path, hparams=FUZZ_HPARAMS, tokenizer_model="gpt2", pre="smollm")
    doc = read_doc(path)
    for kv in doc.kvs:
        if kv.key == "tokenizer.ggml.tokens":  # GPT-2's byte alphabet writes a space as U+0120
            kv.value = [t.replace("\u2581", "\u0120") for t in kv.value]
    doc.kvs.append(KV("tokenizer.ggml.merges", VT.ARRAY, BPE_MERGES, VT.STRING))
    path.write_bytes(serialize(doc).data)
    return path


class Corpus:
    """The seed file and every deterministic mutant of it."""

    def __init__(self, seed_path: Path):
        self.seed_path = Path(seed_path)
        self.doc = read_doc(seed_path)
        self.enc: Encoded = serialize(self.doc)
        self.docs = doc_mutations(self.doc)
        self.cuts = truncations(self.enc)
        self.huge = huge_fields(self.enc)

    def size(self, family: str) -> int | None:
        """How many distinct cases a family has (None: unbounded, seeded)."""
        return {"doc": len(self.docs), "cut": len(self.cuts), "huge": len(self.huge)}.get(family)

    def case(self, family: str, index: int) -> tuple[str, bytes]:
        if family == "doc":
            label, fn = self.docs[index % len(self.docs)]
            return label, serialize(fn(self.doc)).data
        if family == "cut":
            return self.cuts[index % len(self.cuts)]
        if family == "huge":
            return set_field(self.enc, *self.huge[index % len(self.huge)])
        rng = random.Random(index)
        if family == "flip":
            return flips(self.enc, rng, 1)[0]
        if family == "combo":
            label, fn = self.docs[rng.randrange(len(self.docs))]
            enc = serialize(fn(self.doc))
            fields = huge_fields(enc)
            if fields and rng.random() < 0.5:
                label2, data = set_field(enc, *fields[rng.randrange(len(fields))])
            else:
                label2, data = flips(enc, rng, 1)[0]
            return f"{label}; {label2}", data
        raise ValueError(f"unknown family {family!r}")

    def all_cases(self, n_random: int) -> list[tuple[str, int]]:
        """Every deterministic case, then ``n_random`` seeded flip/combo cases."""
        cases = [(f, i) for f in ("doc", "cut", "huge") for i in range(self.size(f))]
        cases += [("flip" if i % 2 else "combo", i) for i in range(n_random)]
        return cases


@dataclass
class Result:
    outcome: str  # ok | rejected | bad-message | traceback | hang | memory
    message: str
    seconds: float
    peak_bytes: int  # peak resident memory above the level before the case
    file_bytes: int

    @property
    def failed(self) -> bool:
        return self.outcome not in ("ok", "rejected") or (self.outcome == "rejected" and not self.within_memory)

    @property
    def within_memory(self) -> bool:
        return self.peak_bytes <= 2 * self.file_bytes + PAGE_ALLOWANCE


def exercise(path: Path) -> None:
    """What `spvjit run` and `spvjit bench` do with a model file before the device."""
    from spvjit.models.llama import ReferenceModel, Tokenizer, chat_template_of, load_gguf, render_chat
    from spvjit.models.llama.errors import printable

    mf = load_gguf(path)
    printable(mf.config.name)
    tok = Tokenizer.from_gguf(mf)
    ids = tok.encode("Hello world")
    tok.decode(ids)
    if mf.has_metadata("tokenizer.chat_template"):
        render_chat([{"role": "user", "content": "hi"}], chat_template_of(mf))
    mf.output_tensor().dequantize_rows([0, mf.config.n_vocab - 1])
    ReferenceModel(mf, max_ctx=4).forward(ids[:1] or [0], 0)


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        m = re.search(rf"^{field}:\s+(\d+)", fh.read(), re.M)
    return int(m.group(1)) if m else 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def run_case(path: Path, target=exercise) -> Result:
    """Run ``target(path)`` in this process under the time and memory limits.

    A rejection whose peak is over the bound is measured once more and the lower peak
    kept: a memory bomb repeats, one-time costs (a first import, a new allocator arena,
    a garbage collection landing in the case) do not.
    """
    r = _run_case_once(path, target)
    if r.outcome == "rejected" and not r.within_memory:
        again = _run_case_once(path, target)
        if again.outcome == r.outcome:
            r.peak_bytes = min(r.peak_bytes, again.peak_bytes)
    return r


def _run_case_once(path: Path, target) -> Result:
    from spvjit.models.llama import ModelError

    size = path.stat().st_size
    old_handler = signal.signal(signal.SIGALRM, _alarm)
    old_limit = resource.getrlimit(resource.RLIMIT_DATA)
    data_now = _status_kib("VmData") * 1024
    cap = data_now + MEMORY_SLACK
    if old_limit[1] != resource.RLIM_INFINITY:
        cap = min(cap, old_limit[1])
    can_measure = _reset_peak()
    rss0 = _status_kib("VmRSS")
    t0 = time.perf_counter()
    outcome, message = "ok", ""
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (cap, old_limit[1]))
        signal.alarm(TIME_LIMIT_S)
        try:
            target(path)
        finally:
            signal.alarm(0)
            resource.setrlimit(resource.RLIMIT_DATA, old_limit)
    except ModelError as e:
        message = str(e)
        ok = "\n" not in message and message.startswith((path.name, str(path)))
        outcome = "rejected" if ok else "bad-message"
    except _Timeout:
        outcome, message = "hang", f"still running after {TIME_LIMIT_S} s"
    except MemoryError:
        outcome, message = "memory", "MemoryError"
    except Exception as e:  # noqa: BLE001 - classifying every failure is the point
        import traceback
        outcome = "traceback"
        message = "".join(traceback.format_exception_only(type(e), e)).strip() + " | " + \
            " < ".join(f"{f.name}:{f.lineno}" for f in reversed(traceback.extract_tb(e.__traceback__)[-4:]))
    finally:
        signal.signal(signal.SIGALRM, old_handler)
    seconds = time.perf_counter() - t0
    peak = (_status_kib("VmHWM") - rss0) * 1024 if can_measure else 0
    return Result(outcome, message, seconds, max(peak, 0), size)


def write_case(data: bytes, directory: Path, name: str = "mutant.gguf") -> Path:
    path = Path(directory) / name
    with open(path, "wb") as fh:
        fh.write(data)
    return path


# `python -m spvjit.cli.main ARGS`, then the process's own peak RSS written to the file named
# in $GGUF_FUZZ_HWM_FILE. Measured in the child after exec: wait4's ru_maxrss would include the
# copy of the parent (pytest, 100+ MB) the child was before it exec'd.
_CLI_WRAPPER = """
import os, re, sys
from spvjit.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
finally:
    with open("/proc/self/status") as fh:
        hwm = re.search(r"VmHWM:\\s+(\\d+)", fh.read()).group(1)
    with open(os.environ["GGUF_FUZZ_HWM_FILE"], "w") as fh:
        fh.write(hwm)
sys.exit(code)
"""


def cli_case(path: Path, timeout: float = 60.0, args=("run",), extra=("-n", "1")) -> tuple[int, str, int]:
    """``spvjit run PATH -n 1`` in a subprocess: (exit code, stderr, its peak RSS in bytes).

    Exit code -9 with stderr "timeout" means it was killed after ``timeout`` seconds.
    """
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        hwm_file = Path(tmp) / "hwm"
        try:
            proc = subprocess.run([sys.executable, "-c", _CLI_WRAPPER, *args, str(path), *extra],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env={**os.environ, "GGUF_FUZZ_HWM_FILE": str(hwm_file)}, timeout=timeout)
        except subprocess.TimeoutExpired:
            return -signal.SIGKILL, "timeout", 0
        peak = int(hwm_file.read_text()) * 1024 if hwm_file.exists() else 0
    return proc.returncode, proc.stderr.decode("utf-8", "replace"), peak
