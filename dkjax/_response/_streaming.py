"""Streaming paths in chunks: initial states from arrays or samplers, the DK weights chunk by chunk.

The noise of path ``i`` depends on ``(key, step, i)`` only, so chunking does not change an
estimate, and only running statistics need to stay on the device.
"""

import math
import warnings
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import jax.random as jr
from jax.sharding import NamedSharding

from .._custom_types import Array, InitialSampler, Observable
from .._engine._estimator import DKResult, unchecked_divergence_kernel
from .._engine._simulate import check_common
from .._engine._sharding import path_sharding
from .._validation import check_finite, check_key, check_positive, check_states


def _spread_over_processes(a):
    """With several processes, a sampler's chunk (equal on all of them) split over every process's devices."""
    if a is None or jax.process_count() == 1 or not getattr(a, "is_fully_addressable", True):
        return a
    sharding = path_sharding()
    return jax.device_put(a, sharding) if a.shape[0] % sharding.mesh.size == 0 else a


def initial_chunks(x0, score0, num_paths, chunk_size, key) -> tuple[int, int, Callable[[int], tuple]]:
    """Resolves ``x0`` (array or sampler) into ``(num_paths, chunk, get(c) -> (x0, score0, n_valid))``.

    Every chunk has the same shape (the last one is padded and masked), so the chunk
    kernels compile once. Samplers get ``fold_in(init_key, c)`` with ``init_key`` split from
    ``key``, never a key the Brownian noise uses; with several processes each process
    draws the whole chunk and simulates its share of it.
    """
    chunk_size = check_positive("chunk_size", chunk_size, integer=True)
    if callable(x0):
        return _sampler_chunks(x0, score0, num_paths, chunk_size, key)
    return _array_chunks(x0, score0, num_paths, chunk_size)


def _sampler_chunks(sampler: InitialSampler, score0, num_paths, chunk_size, key):
    """``initial_chunks`` for a sampler: each chunk drawn with ``fold_in(init_key, c)``, its output checked."""
    if num_paths is None:
        raise ValueError("num_paths is required when x0 is a sampler callable(key, n) -> (x0, score0 or None).")
    if score0 is not None:
        raise ValueError("score0 must be None when x0 is a sampler (the sampler returns the initial score).")
    num_paths = check_positive("num_paths", num_paths, integer=True)
    chunk = min(chunk_size, num_paths)
    init_key = jr.split(key)[1]

    def get(c):
        n_valid = min(chunk, num_paths - c * chunk)
        out = sampler(jr.fold_in(init_key, c), chunk)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError("the x0 sampler must return a tuple (x0, score0 or None).")
        xs, ss = out
        if jnp.shape(xs)[0] != chunk or jnp.ndim(xs) != 2:
            raise ValueError(f"the x0 sampler must return x0 of shape ({chunk}, d); got {jnp.shape(xs)}.")
        if ss is not None and jnp.shape(ss) != jnp.shape(xs):
            raise ValueError(f"the x0 sampler's score0 must have the shape of x0; got {jnp.shape(ss)}.")
        return _spread_over_processes(jnp.asarray(xs)), _spread_over_processes(ss), n_valid

    return num_paths, chunk, get


def _array_chunks(x0, score0, num_paths, chunk_size):
    """``initial_chunks`` for an array: row slices, the last padded by repeating the last row."""
    total, _ = check_states(x0)
    if num_paths is not None and num_paths != total:
        raise ValueError(f"num_paths ({num_paths}) must equal x0.shape[0] ({total}) when x0 is an array.")
    if score0 is not None and jnp.shape(score0) != jnp.shape(x0):
        raise ValueError(f"score0 must have the shape of x0, {jnp.shape(x0)}; got {jnp.shape(score0)}.")
    sharding = getattr(x0, "sharding", None)
    x0 = jnp.asarray(x0)
    chunk = min(chunk_size, total)
    if chunk == total:  # one chunk: the array as it is, sharded or not
        return total, chunk, lambda c: (x0, None if score0 is None else jnp.asarray(score0), total)
    # Slices of a path-sharded x0 come out replicated; put each chunk back on the mesh so
    # every device keeps working on its own share of the paths.
    spread = isinstance(sharding, NamedSharding) and len(sharding.device_set) > 1
    place = (lambda a: jax.device_put(a, sharding)) if spread and chunk % len(sharding.device_set) == 0 else (lambda a: a)
    pad = -total % chunk
    if pad:
        x0 = jnp.concatenate([x0, jnp.repeat(x0[-1:], pad, axis=0)])
        if score0 is not None:
            score0 = jnp.concatenate([jnp.asarray(score0), jnp.repeat(jnp.asarray(score0)[-1:], pad, axis=0)])

    def get(c):
        rows = slice(c * chunk, (c + 1) * chunk)
        return place(x0[rows]), None if score0 is None else place(score0[rows]), min(chunk, total - c * chunk)

    return total, chunk, get


def check_chunk(c: int, sde, xs, t0, t1, num_steps: int, key) -> None:
    """The first chunk is checked as ``dkjax.simulate`` checks its input (model, states, grid, key),
    once for the run; every further chunk only for finite states, the one thing it brings anew."""
    if c == 0:
        check_common(sde, xs, t0, t1, num_steps, key)
    else:
        check_finite("x0", xs)


def stream_dk(sde, x0, score0, num_paths, chunk_size, key, dk_kwargs) -> Iterator[tuple[int, DKResult, Array]]:
    """Runs the DK estimator chunk by chunk; yields ``(chunk_index, result, valid_mask)``.

    ``dk_kwargs`` are ``divergence_kernel``'s ``t1``, ``num_steps``, ``t0``, ``kernel_rate``,
    ``response_mix`` and ``mode``. ``dk_kwargs["kernel_rate"] = "auto"`` is resolved on the
    first chunk and the chosen value reused, so all chunks use one rate.
    """
    check_key(key)
    num_paths, chunk, get = initial_chunks(x0, score0, num_paths, chunk_size, key)
    kwargs = dict(dk_kwargs)
    for c in range(math.ceil(num_paths / chunk)):
        xs, ss, n_valid = get(c)
        check_chunk(c, sde, xs, kwargs["t0"], kwargs["t1"], kwargs["num_steps"], key)
        result = unchecked_divergence_kernel(sde, xs, score0=ss, key=key, path_offset=c * chunk, dlogp0=None,
                                             on_nonfinite="ignore", **kwargs)  # fmt: skip
        if isinstance(kwargs.get("kernel_rate"), str):
            kwargs["kernel_rate"] = result.kernel_rate
        yield c, result, jnp.arange(chunk) < n_valid


def warn_nonfinite(num_nonfinite: int, num_total: int, where: str) -> None:
    if num_nonfinite:
        warnings.warn(
            f"{where}: {num_nonfinite} of {num_total} paths went non-finite and were excluded from the averages "
            "(see num_nonfinite on the result). Use a smaller time step or a larger kernel_rate.",
            RuntimeWarning,
            stacklevel=3,
        )


def apply_phi(phi: Observable, x: Array) -> Array:
    """``phi`` on every row of ``x``: shape ``(paths,) + phi_shape``."""
    return jax.vmap(lambda xi: jnp.asarray(phi(xi), x.dtype))(x)


def raise_bad_phi(num_bad_phi: int, num_paths: int, name: str = "phi") -> None:
    if num_bad_phi:
        raise ValueError(
            f"{name} returned non-finite values at {num_bad_phi} of {num_paths} finite paths; "
            f"make {name} finite on the states the SDE reaches."
        )
