"""numpy interpreter of the tile IR."""
from .executor import Pointer, ProgramRunner
from .host_tensor import HostTensor

__all__ = ["Pointer", "ProgramRunner", "HostTensor"]
