"""The one exception type the llama runner raises for bad model files and inputs."""


class ModelError(ValueError):
    """A model file (or something read from it) cannot be used.

    Messages are one line and start with the file they concern, then name the GGUF
    tensor or metadata key at fault where there is one, e.g.
    ``model.gguf: tensor 'blk.0.attn_q.weight' has unsupported type Q5_K (supported: ...)``.
    """


def printable(text: str, limit: int = 200) -> str:
    """``text`` from a model file, safe to print on a terminal: control and format
    characters (escape sequences, bidi overrides) shown as ``\\x1b``-style escapes, and
    at most ``limit`` characters."""
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."
