"""`tl.extra`: vendor math libraries; `libdevice` here maps to portable SPIR-V lowerings."""
from . import libdevice  # noqa: F401
