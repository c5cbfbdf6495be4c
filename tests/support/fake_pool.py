"""A stand-in for upstream/pool.py ServerPool with just what balancers and the retry policy read."""

from dataclasses import dataclass


@dataclass(eq=False)
class Pool:
    label: str
    weight: int = 1
    backup: bool = False
    drain: bool = False
    ejected: bool = False
    down: bool = False
    active: int = 0
    ewma_s: float = 0.001
    failures: int = 0
