"""`spvjit serve`: an OpenAI-compatible HTTP server over the device llama runner.

- :mod:`.protocol`: request validation and the OpenAI JSON objects.
- :mod:`.textstream`: tokens -> text pieces, stop strings, logprobs.
- :mod:`.engine`: continuous batching in one model thread (``DeviceLlama.decode_batch``).
- :mod:`.metrics`: counters and the Prometheus text of GET /metrics.
- :mod:`.app`: the Starlette routes (run under uvicorn by ``spvjit.cli.serve``).
"""
