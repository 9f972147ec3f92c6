"""numpy interpreter of the tile IR."""
import numpy as np

from .executor import Pointer, ProgramRunner
from .host_tensor import HostTensor

__all__ = ["Pointer", "ProgramRunner", "HostTensor", "run_interpreted"]


def run_interpreted(kernel, runtime_args, grid) -> None:
    """Run every program of `grid` over the verified IR `kernel`; tensors are read and
    written in place through their host views."""
    buffers, env = [], {}
    values = dict(runtime_args)
    for param in kernel.params:
        v = values[param.name]
        if param.value.type.is_pointer:
            env[id(param.value)] = Pointer(len(buffers), 0)
            buffers.append(v.view_host().reshape(-1))
        else:
            env[id(param.value)] = np.asarray(v, param.value.type.elem.numpy)[()]
    if 0 in grid:
        return
    ProgramRunner(kernel, buffers, env, grid).run_all()
