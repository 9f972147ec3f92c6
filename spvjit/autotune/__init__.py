"""Triton-style autotuning: `spvjit.autotune`, `spvjit.Config`, results persisted per device."""
from .config import Config
from .tuner import Autotuner, autotune

__all__ = ["Autotuner", "Config", "autotune"]
