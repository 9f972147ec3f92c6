"""`spvjit serve`: a real server process on the tiny test model, bound to 127.0.0.1 on a
free port, driven with the official `openai` client (and raw HTTP for malformed
requests).

Greedy results are compared for exact equality: batched decoding computes each
sequence's row with the single-vector kernels' arithmetic (tests/llama/test_batch_decode.py
checks the logits bit for bit), so a request gets the tokens `spvjit run --temp 0`
gives, alone or among seven others; logprobs (computed from those logits) are compared
exactly too.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")

SPVJIT = [sys.executable, "-m", "spvjit.cli.main"]
PARALLEL = 8
CTX = 128
PROMPTS = ["hello world", "aa", "hello", "world hello world", "a", "he ll o", "wor ld", "hello aa"]


def _start(model: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start `spvjit serve` on port 0; (process, base URL) once /health answers."""
    f = open(log, "w")
    proc = subprocess.Popen([*SPVJIT, "serve", str(model), "--port", "0", *extra], stdout=f, stderr=f)
    deadline = time.monotonic() + 120
    url = None
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
        if m:
            url = m.group(1)
            try:
                status, _ = _http("GET", url, "/health")
                if status == 200:
                    return proc, url
            except OSError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server did not start:\n{log.read_text()}")


def _http(method: str, url: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _metrics(url: str) -> dict[str, float]:
    status, body = _http("GET", url, "/metrics")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    from .conftest import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("serve") / "tiny.gguf", seed=11)


@pytest.fixture(scope="module")
def server(tiny_gguf):
    log = tiny_gguf.parent / "serve.log"
    proc, url = _start(tiny_gguf, log, "--parallel", str(PARALLEL), "--ctx", str(CTX), "--queue", "256")
    yield proc, url, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key="none", max_retries=0, timeout=60)


def _run_cli(model: Path, prompt: str, n: int, chat: bool) -> str:
    args = [*SPVJIT, "run", str(model), "-p", prompt, "-n", str(n), "--temp", "0", "--ctx", str(CTX), "--no-echo"]
    out = subprocess.run(args + (["--chat"] if chat else []), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\n")
    return out.stdout[:-1]


def test_models_health_metrics(server, client):
    _, url, _ = server
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert _http("GET", url, "/health") == (200, b'{"status":"ok"}')
    m = _metrics(url)
    assert m["spvjit_slots"] == PARALLEL and m["spvjit_queue_depth"] == 0


def test_greedy_equals_spvjit_run(server, client, tiny_gguf):
    n = 24
    # `spvjit run` drops the space a SentencePiece vocabulary puts before the first
    # generated word; a completion keeps it (the continuation of the prompt's text)
    want = _run_cli(tiny_gguf, "hello world", n, chat=False)
    r = client.completions.create(model="tiny", prompt="hello world", max_tokens=n, temperature=0)
    assert r.choices[0].text.removeprefix(" ") == want
    assert r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (4, n)   # <s> ▁hello ▁wor ld
    want = _run_cli(tiny_gguf, "hello", n, chat=True)
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                       max_tokens=n, temperature=0)
    assert r.choices[0].message.content == want
    assert r.choices[0].message.role == "assistant"


def test_streaming_equals_non_streaming(client):
    msgs = [{"role": "user", "content": "hello world"}]
    whole = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=20, temperature=0,
                                           logprobs=True, top_logprobs=3)
    chunks = list(client.chat.completions.create(model="tiny", messages=msgs, max_tokens=20, temperature=0,
                                                 logprobs=True, top_logprobs=3, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in whole.choices[0].logprobs.content]
    assert len(streamed) == 20
    for e in streamed:   # greedy: the chosen token is the most likely one
        assert len(e.top_logprobs) == 3 and e.top_logprobs[0].logprob == e.logprob
    done = client.completions.create(model="tiny", prompt="hello", max_tokens=12, temperature=0, logprobs=2)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="hello", max_tokens=12, temperature=0, stream=True))
    assert streamed == done.choices[0].text
    assert len(done.choices[0].logprobs.tokens) == 12


def _stream_tokens(url: str, prompt: str, n: int) -> list[tuple[str, float]]:
    """(token, logprob) of a greedy streamed chat reply, through its own client."""
    c = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
    out = []
    for chunk in c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}],
                                           max_tokens=n, temperature=0, logprobs=True, stream=True):
        if chunk.choices and chunk.choices[0].logprobs:
            out += [(e.token, e.logprob) for e in chunk.choices[0].logprobs.content]
    return out


def test_concurrent_streams_get_the_tokens_they_get_alone(server):
    _, url, _ = server
    n = 40
    alone = [_stream_tokens(url, p, n) for p in PROMPTS]
    before = _metrics(url)
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: _stream_tokens(url, p, n), PROMPTS))
    after = _metrics(url)
    assert together == alone
    assert all(len(t) == n for t in alone)
    steps = after["spvjit_decode_steps_total"] - before["spvjit_decode_steps_total"]
    rows = after["spvjit_decode_rows_total"] - before["spvjit_decode_rows_total"]
    assert rows == len(PROMPTS) * (n - 1)
    assert steps < rows / 2, "the streams were not decoded in batches"


def test_sampling_parameters_and_stop(client):
    kw = dict(model="tiny", prompt="hello", max_tokens=30, temperature=0.9, top_p=0.9, seed=5)
    a = client.completions.create(**kw, extra_body={"top_k": 20}).choices[0].text
    b = client.completions.create(**kw, extra_body={"top_k": 20}).choices[0].text
    assert a == b   # same seed, same text
    greedy = client.completions.create(model="tiny", prompt="hello", max_tokens=30, temperature=0).choices[0].text
    stop = greedy[10:13]
    r = client.completions.create(model="tiny", prompt="hello", max_tokens=30, temperature=0, stop=["zzz", stop])
    assert r.choices[0].text == greedy[: greedy.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    chunks = client.completions.create(model="tiny", prompt="hello", max_tokens=30, temperature=0,
                                       stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in chunks) == greedy[: greedy.index(stop)]


@pytest.mark.parametrize("path, body, needle", [
    ("/v1/completions", b'{"prompt": "hello", "max_tokens": ', "not valid JSON"),
    ("/v1/completions", b'[1, 2]', "JSON object"),
    ("/v1/completions", b'{"prompt": "hello", "max_tokens": "8"}', "'max_tokens' must be an integer"),
    ("/v1/completions", b'{"prompt": "hello", "temperature": "hot"}', "'temperature'"),
    ("/v1/completions", b'{"prompt": 5}', "'prompt'"),
    ("/v1/completions", b'{"prompt": "hello", "max_tokens": 0}', "at least 1"),
    ("/v1/completions", b'{"prompt": "hello", "max_tokens": 1000}', "leaves room for"),
    ("/v1/completions", json.dumps({"prompt": "hello " * 200}).encode(), "does not fit the context"),
    ("/v1/completions", json.dumps({"prompt": "a" * 40000}).encode(), "far more than the context"),
    ("/v1/completions", b'{"prompt": [1, 99999]}', "token ids"),
    ("/v1/completions", b'{"prompt": "hello", "stream": "yes"}', "'stream'"),
    ("/v1/completions", b'{"prompt": "hello", "stop": [1]}', "'stop'"),
    ("/v1/completions", b'{"prompt": "hello", "n": 2}', "'n'"),
    ("/v1/chat/completions", b'{"messages": []}', "'messages'"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": 3}]}', "content"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 50}',
     "'top_logprobs'"),
])
def test_bad_requests_get_400_and_the_server_stays_up(server, path, body, needle):
    _, url, _ = server
    status, data = _http("POST", url, path, body)
    assert status == 400, data
    err = json.loads(data)["error"]
    assert needle in err["message"] and err["type"] == "invalid_request_error"
    assert _http("GET", url, "/health")[0] == 200


def test_unknown_route_is_a_json_404(server):
    status, data = _http("GET", server[1], "/v1/nothing")
    assert status == 404 and "error" in json.loads(data)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_load_200_requests_at_concurrency_8(server):
    proc, url, _ = server
    clients = [openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60) for _ in range(8)]

    def one(i: int) -> int:
        c = clients[i % 8]
        if i % 2:
            r = c.completions.create(model="tiny", prompt=PROMPTS[i % 8], max_tokens=4, temperature=0)
            return r.usage.completion_tokens
        chunks = list(c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROMPTS[i % 8]}],
                                                max_tokens=4, temperature=0.7, seed=i, stream=True))
        return sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content is not None) - 1

    with ThreadPoolExecutor(8) as pool:
        assert all(n > 0 for n in pool.map(one, range(40)))     # warm-up: caches, pools, graphs
        rss0 = _rss_kib(proc.pid)
        results = list(pool.map(one, range(200)))
        rss1 = _rss_kib(proc.pid)
    assert len(results) == 200 and all(n > 0 for n in results)
    # no growth: 200 requests leave nothing behind (a leak of even one logits row per
    # request would be 200 x 1.1 KiB plus the request objects; allocator noise stays
    # well under 4 MiB)
    assert rss1 - rss0 < 4096, f"RSS grew by {rss1 - rss0} KiB"
    m = _metrics(url)
    assert m['spvjit_requests_total{outcome="error"}'] == 0
    assert m["spvjit_active_slots"] == 0 and m["spvjit_queue_depth"] == 0


def test_ctrl_c_drains_then_exits(tiny_gguf, server):
    """SIGINT while streams are open: they all finish, then the process exits."""
    proc, url, log = server
    results = {}

    def stream(i):
        c = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
        chunks = list(c.completions.create(model="tiny", prompt=PROMPTS[i], max_tokens=100, temperature=0,
                                           stream=True, stream_options={"include_usage": True}))
        results[i] = (chunks[-2].choices[0].finish_reason, chunks[-1].usage.completion_tokens)

    done_before = _metrics(url)['spvjit_requests_total{outcome="length"}']

    def arrived() -> float:   # requests the server has: decoding, waiting or finished
        m = _metrics(url)
        return m["spvjit_active_slots"] + m["spvjit_queue_depth"] + m['spvjit_requests_total{outcome="length"}'] - done_before

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(stream, i) for i in range(8)]
        deadline = time.monotonic() + 30
        while arrived() < 8 and time.monotonic() < deadline:
            time.sleep(0.001)
        proc.send_signal(signal.SIGINT)
        for f in futures:
            f.result()
    assert results == {i: ("length", 100) for i in range(8)}
    assert proc.wait(timeout=30) in (0, 130), log.read_text()
    text = log.read_text()
    assert "Traceback" not in text and "Application shutdown complete" in text


def test_engine_queue_bound_and_cancellation(tiny_gguf):
    """In-process: a full queue refuses (QueueFull -> 429), a cancelled job frees its slot
    at the next token boundary, whether it was waiting or decoding."""
    from spvjit.models.llama import Tokenizer, load_gguf
    from spvjit.models.llama.device_model import DeviceLlama
    from spvjit.serve.engine import Engine, Job, QueueFull
    from spvjit.serve.protocol import GenParams
    from spvjit.serve.textstream import TextStream

    mf = load_gguf(tiny_gguf)
    model = DeviceLlama(mf, max_ctx=CTX, slots=1, tuning=None)
    tok = Tokenizer.from_gguf(mf)

    async def scenario():
        loop = asyncio.get_running_loop()
        engine = Engine(model, tok, max_queue=1)

        def job(n):
            p = GenParams(max_tokens=n, temperature=0.0)
            return Job("t", [1, 5, 9], p, n, TextStream(tok, []), loop)

        long_job, queued, extra = job(120), job(3), job(3)
        engine.submit(long_job)      # takes the slot once the engine runs
        engine.submit(queued)        # waits
        with pytest.raises(QueueFull):
            engine.submit(extra)     # one slot + a queue of one: full
        engine.cancel(queued)
        engine.start()
        ev = await asyncio.wait_for(long_job.events.get(), 30)
        assert ev[0] == "text"
        engine.cancel(long_job)
        for _ in range(300):         # the first decode step may still compile its kernels
            if long_job.done:
                break
            await asyncio.sleep(0.1)
        assert long_job.done and long_job.n_gen < 120
        assert engine._free == [0] and not engine._active and not engine._waiting
        assert engine.metrics.requests["cancelled"] == 2
        again = job(3)
        engine.submit(again)         # the slot serves the next request
        while (ev := await asyncio.wait_for(again.events.get(), 30))[0] != "done":
            pass
        assert ev[3] == "length" and ev[4]["completion_tokens"] == 3
        await asyncio.to_thread(engine.stop)

    try:
        asyncio.run(scenario())
    finally:
        model.close()


def test_cli_errors_are_one_line(tiny_gguf):
    for args, needle in ((["--parallel", "0"], "--parallel"), (["--port", "70000"], "--port"),
                         (["--ctx", "1"], "--ctx")):
        r = subprocess.run([*SPVJIT, "serve", str(tiny_gguf), *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_throughput_benchmark_runs(tiny_gguf):
    """benchmarks/serve_throughput.py keeps working (a smoke run; speed is not judged here)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_throughput.py"
    r = subprocess.run([sys.executable, str(script), "-m", str(tiny_gguf), "--servers", "spvjit", "-c", "1,2",
                        "-n", "40", "-r", "1", "--ctx", "96", "--prompt", "hello world", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["servers"]["spvjit"]["results"]
    assert set(res) == {"1", "2"}
    for c, row in res.items():
        assert row["median_e2e_tps"] > 0 and 0 < row["tokens"] <= 40 * int(c)
