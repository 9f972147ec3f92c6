"""The one exception type the llama runner raises for bad model files and inputs."""


class ModelError(ValueError):
    """A model file (or something read from it) cannot be used.

    Messages are one line and start with the file they concern, then name the GGUF
    tensor or metadata key at fault where there is one, e.g.
    ``model.gguf: tensor 'blk.0.attn_q.weight' has unsupported type Q5_K (supported: ...)``.
    """
