"""A candidate configuration for an autotuned kernel (Triton's `triton.Config`)."""
from __future__ import annotations


class Config:
    def __init__(self, kwargs: dict, num_warps: int = 4, num_stages: int = 2, num_ctas: int = 1,
                 maxnreg=None, pre_hook=None):
        self.kwargs = dict(kwargs)
        self.num_warps = num_warps
        # accepted for Triton compatibility; no meaning here (num_ctas > 1 is refused at launch)
        self.num_stages, self.num_ctas, self.maxnreg = num_stages, num_ctas, maxnreg
        self.pre_hook = pre_hook      # called with every argument of the launch, as in Triton

    def all_kwargs(self) -> dict:
        return {**self.kwargs, "num_warps": self.num_warps}

    def to_json(self) -> dict:
        return {"kwargs": self.kwargs, "num_warps": self.num_warps, "num_stages": self.num_stages}

    @classmethod
    def from_json(cls, d: dict) -> "Config":
        return cls(d["kwargs"], d.get("num_warps", 4), d.get("num_stages", 2))

    def __eq__(self, other):
        return isinstance(other, Config) and self.to_json() == other.to_json()

    def __hash__(self):
        return hash(repr(sorted(self.to_json().items(), key=str)))

    def __repr__(self) -> str:
        parts = [f"{k}: {v}" for k, v in self.kwargs.items()] + [f"num_warps: {self.num_warps}"]
        return ", ".join(parts)
