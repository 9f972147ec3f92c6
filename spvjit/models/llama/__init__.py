"""Llama-architecture models from GGUF files.

Host-side parts (no GPU needed): loading (:func:`load_gguf`), dequantization
(:mod:`.quants`), tokenization (:class:`Tokenizer`), chat prompts (:func:`render_chat`),
sampling (:class:`Sampler`) and a numpy reference forward pass (:class:`ReferenceModel`).
"""

from .chat import chat_template_of, render_chat
from .config import LlamaConfig
from .default_model import default_model_path
from .errors import ModelError
from .gguf_model import LlamaModelFile, QuantTensor, load_gguf
from .quants import QUANT_TYPES, BlockField, QuantType, dequantize
from .reference import ReferenceModel
from .sampling import Sampler
from .tokenizer import StreamDecoder, Tokenizer

__all__ = [
    "BlockField",
    "LlamaConfig",
    "LlamaModelFile",
    "ModelError",
    "QUANT_TYPES",
    "QuantTensor",
    "QuantType",
    "ReferenceModel",
    "Sampler",
    "StreamDecoder",
    "Tokenizer",
    "chat_template_of",
    "default_model_path",
    "dequantize",
    "load_gguf",
    "render_chat",
]
