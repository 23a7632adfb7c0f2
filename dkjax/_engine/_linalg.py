"""Small dense inverses and log-determinants for the estimator's per-path, per-step matrices.

jaxlib's CPU LAPACK kernels for batched (vmapped) factorisations were seen to deadlock
intermittently on a 2-core machine (jaxlib 0.10.2: two batched ``getrf`` calls waiting on
each other in the shared thread pool). On the CPU the estimator therefore uses Gauss-Jordan
elimination in plain XLA operations (vmappable, differentiable, fast enough for the dense
reference mode, ``d`` up to about 100); other platforms use their own LU factorisation.
"""

import jax
import jax.numpy as jnp

from .._custom_types import Array, Float, Scalar


def inverse_and_logabsdet(matrix: Float[Array, "n n"]) -> tuple[Float[Array, "n n"], Scalar]:
    """Inverse and ``log|det|`` of a square matrix, differentiable in both outputs.

    Gauss-Jordan with partial pivoting on the CPU (see the module docstring), LU elsewhere.
    A singular matrix gives non-finite values (which the estimator reports as non-finite paths).
    """
    if jax.default_backend() != "cpu":
        return jnp.linalg.inv(matrix), jnp.linalg.slogdet(matrix)[1]
    return _gauss_jordan(matrix)


def _gauss_jordan(matrix: Float[Array, "n n"]) -> tuple[Float[Array, "n n"], Scalar]:
    """Inverse and ``log|det|`` by Gauss-Jordan elimination with partial pivoting."""
    n = matrix.shape[0]
    rows = jnp.arange(n)

    def eliminate(k, carry):
        augmented, logabsdet = carry
        candidates = jnp.where(rows >= k, jnp.abs(augmented[:, k]), -1.0)
        pivot_row = jnp.argmax(candidates)
        row_k, row_p = augmented[k], augmented[pivot_row]
        augmented = augmented.at[k].set(row_p).at[pivot_row].set(row_k)
        pivot = augmented[k, k]
        normalised = augmented[k] / pivot
        augmented = augmented - jnp.outer(augmented[:, k], normalised)
        return augmented.at[k].set(normalised), logabsdet + jnp.log(jnp.abs(pivot))

    augmented = jnp.concatenate([matrix, jnp.eye(n, dtype=matrix.dtype)], axis=1)
    augmented, logabsdet = jax.lax.fori_loop(0, n, eliminate, (augmented, jnp.zeros((), matrix.dtype)))
    return augmented[:, n:], logabsdet
