"""Small dense linear algebra written in plain JAX operations.

jaxlib's CPU LAPACK kernels for batched (vmapped) factorisations were seen to deadlock
intermittently on a 2-core machine (jaxlib 0.10.2: two batched ``getrf`` calls waiting on
each other in the shared thread pool). The estimator's hot loop applies small factorisations
to every path at every step, so it uses this Gauss-Jordan elimination instead: pure XLA
operations, vmappable, differentiable, and fast enough for the dense reference mode
(``d`` up to about 100) and for general noise matrices.
"""

import jax
import jax.numpy as jnp

from ._custom_types import Array, Float, Scalar


def inverse_and_logabsdet(matrix: Float[Array, "n n"]) -> tuple[Float[Array, "n n"], Scalar]:
    """Inverse and ``log|det|`` of a square matrix by Gauss-Jordan with partial pivoting.

    Differentiable in both outputs. A singular matrix gives non-finite values (which the
    estimator reports as non-finite paths).
    """
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
