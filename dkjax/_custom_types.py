"""Shared jaxtyping aliases, so annotations mean the same thing in every module."""

from collections.abc import Callable
from typing import Any, TypeAlias

from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, PyTree

Scalar: TypeAlias = Float[ArrayLike, ""]
RealScalarLike: TypeAlias = float | int | Float[ArrayLike, ""]
State: TypeAlias = Float[Array, " d"]
States: TypeAlias = Float[Array, "paths d"]
Covectors: TypeAlias = Float[Array, "paths d"]
Diffusion: TypeAlias = Float[Array, " d"] | Float[Array, "d m"]
PathIds: TypeAlias = Int[Array, " paths"]
Key: TypeAlias = PRNGKeyArray
Params: TypeAlias = PyTree[Array]
KernelRate: TypeAlias = RealScalarLike | Callable[[Scalar], Scalar] | str
Observable: TypeAlias = Callable[[State], Any]
# Draws n initial states and, where the law is known, their scores: (key, n) -> (x0, score0 or None).
InitialSampler: TypeAlias = Callable[[Key, int], tuple[States, Covectors | None]]

__all__ = [
    "Array",
    "ArrayLike",
    "Covectors",
    "Diffusion",
    "Float",
    "InitialSampler",
    "Int",
    "Key",
    "KernelRate",
    "Observable",
    "Params",
    "PathIds",
    "PyTree",
    "RealScalarLike",
    "Scalar",
    "State",
    "States",
]
