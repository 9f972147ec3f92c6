"""Model runners built on spvjit's public API (see models/llama)."""
