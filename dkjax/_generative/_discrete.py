"""Discrete data columns: a continuous model inside, the column's own values outside."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Float, Key

MAX_LEVELS = 10  # "auto": a column with at most this many distinct values (and at most a quarter of the rows)
DEQUANTIZE_SALT = 2**31 + 5  # fold_in salts of the dequantising draws (training points; held-out points: + 1)


def _cell_edges(levels: Float[Array, " k"]) -> tuple[Float[Array, " k"], Float[Array, " k"]]:
    """Each level's cell: from the midpoint with the level below to the midpoint with the one above.

    The two end cells extend as far beyond their level as the neighbouring gap's half, so that a
    binary column's two cells are equally wide.
    """
    mids = (levels[:-1] + levels[1:]) / 2
    low = jnp.concatenate([levels[:1] - (levels[1] - levels[0]) / 2, mids])
    high = jnp.concatenate([mids, levels[-1:] + (levels[-1] - levels[-2]) / 2])
    return low, high


class DiscreteColumns(eqx.Module):
    """Columns that take a few values: trained on as cells of width, sampled back onto their values.

    A continuous SDE cannot put its mass on exactly two values of a binary column; it smears
    them into a bump. So each such column is *dequantised* for training: a data value ``v`` is
    replaced by a uniform draw from its cell, the interval between the midpoints with the
    neighbouring values. The model learns that continuous law, and each sample is mapped back to
    the value whose cell it falls in (its nearest value). If the model matches the dequantised
    law, the mapped samples follow the data's discrete law exactly; a model that is off puts the
    wrong share in a cell, never a value the column does not take.

    Attributes:
        columns: the discrete columns' indices.
        levels: each column's sorted distinct values (at least two), in the data's units.

    Example:
        >>> data = jnp.array([[0.3, 1.0], [1.7, 2.0], [0.2, 2.0], [2.9, 1.0], [1.1, 1.0], [0.8, 2.0],
        ...                   [2.2, 1.0], [0.5, 2.0]])
        >>> discrete = dkjax.DiscreteColumns.detect(data)
        >>> print(discrete.columns, discrete.levels[0])
        (1,) [1. 2.]
        >>> print(discrete.snap(jnp.array([[0.33, 1.4], [1.2, 1.6]])))
        [[0.33 1.  ]
         [1.2  2.  ]]
    """

    columns: tuple[int, ...] = eqx.field(static=True)
    levels: tuple[Float[Array, " k"], ...]

    def __init__(self, columns, levels):
        if len(columns) != len(levels):
            raise ValueError(f"columns and levels must match in length; got {len(columns)} and {len(levels)}.")
        for column, values in zip(columns, levels, strict=True):
            if jnp.ndim(values) != 1 or len(values) < 2:
                raise ValueError(f"column {column}: levels must be a 1-D array of at least 2 values.")
        self.columns = tuple(int(c) for c in columns)
        self.levels = tuple(jnp.sort(jnp.asarray(values)) for values in levels)

    @classmethod
    def detect(cls, data: Float[Array, "n d"], columns="auto") -> "DiscreteColumns":
        """The discrete columns of ``data``: those named in ``columns``, or found.

        Arguments:
            data: the training points ``(n, d)``, in the data's units.
            columns: ``"auto"``: every column with at most 10 distinct values and at most a
                quarter as many values as rows (so that a small continuous sample is not taken
                for a discrete one); or a sequence of column indices (``()``: none).

        Returns:
            The ``DiscreteColumns``, each with the distinct values it takes in ``data``.

        Raises:
            ValueError: ``data`` not of shape ``(n, d)``; a named column out of range, named
                twice, or with fewer than two distinct values.
        """
        data = np.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"data must have shape (n, d); got {data.shape}.")
        if isinstance(columns, str):
            if columns != "auto":
                raise ValueError(f"discrete_columns must be 'auto' or a sequence of column indices; got {columns!r}.")
            limit = min(MAX_LEVELS, data.shape[0] // 4)
            values = {j: np.unique(data[:, j]) for j in range(data.shape[1])}
            columns = [j for j, v in values.items() if 2 <= len(v) <= limit]
        if len(set(map(repr, columns))) != len(columns):
            raise ValueError(f"discrete_columns names a column more than once: {list(columns)}.")
        for j in columns:
            if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or not 0 <= j < data.shape[1]:
                raise ValueError(f"discrete_columns: {j!r} is not a column index of data with {data.shape[1]} columns.")
        levels = [np.unique(data[:, j]) for j in columns]  # only the named or found columns
        for j, values in zip(columns, levels, strict=True):
            if len(values) < 2:
                raise ValueError(f"discrete_columns: column {j} takes a single value; a discrete column needs two.")
        return cls(tuple(columns), tuple(jnp.asarray(values, data.dtype) for values in levels))

    def dequantize(self, data: Float[Array, "n d"], key: Key) -> Float[Array, "n d"]:
        """``data`` with each discrete column's values replaced by uniform draws from their cells."""
        return _dequantized(self, data, key)

    def snap(self, samples: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """``samples`` with each discrete column moved to its nearest value (the cell it falls in)."""
        return _snapped(self, samples)


def dequantized(data: Float[Array, "n d"], columns, key: Key) -> tuple[Float[Array, "n d"], "DiscreteColumns | None"]:
    """``(data, discrete)``: ``DiscreteColumns.detect(data, columns)`` and ``data`` dequantised by it.

    ``discrete`` is ``None`` (and ``data`` returned as it is) when there is no discrete column.
    The draws use ``fold_in(key, DEQUANTIZE_SALT)``, a key of their own, so that data without
    discrete columns leave every other draw of a fit unchanged.
    """
    discrete = DiscreteColumns.detect(data, columns)
    if not discrete.columns:
        return data, None
    return discrete.dequantize(jnp.asarray(data), jr.fold_in(key, DEQUANTIZE_SALT)), discrete


def _nearest(values, levels):
    """The index of each value's nearest level (the cell it falls in)."""
    return jnp.argmin(jnp.abs(values[:, None] - levels[None, :]), axis=1)


# Compiled as one program each: eagerly, every operation of every column compiles on its own.
@eqx.filter_jit
def _dequantized(discrete: DiscreteColumns, data, key):
    for j, (column, levels) in enumerate(zip(discrete.columns, discrete.levels, strict=True)):
        low, high = _cell_edges(levels)
        index = _nearest(data[:, column], levels)
        u = jr.uniform(jr.fold_in(key, j), index.shape, data.dtype)
        data = data.at[:, column].set(low[index] + u * (high[index] - low[index]))
    return data


@eqx.filter_jit
def _snapped(discrete: DiscreteColumns, samples):
    for column, levels in zip(discrete.columns, discrete.levels, strict=True):
        samples = samples.at[:, column].set(levels[_nearest(samples[:, column], levels)].astype(samples.dtype))
    return samples
