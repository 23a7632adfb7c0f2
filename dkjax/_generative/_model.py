"""A trained generative SDE that samples itself: model, initial law, time grid and data scaling."""

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import Array, Float, InitialSampler, Key, RealScalarLike, States
from ._arguments import as_float_points
from ._data import GaussianInitial
from ._discrete import DEQUANTIZE_SALT, DiscreteColumns, dequantized
from .._sde._gradient_flow import GradientFlowSDE, gradient_flow_template
from .._sde._neural import NeuralSDE
from .._sde._abstract import AbstractSDE
from .._engine._simulate import simulate
from ._snapshots import EmpiricalInitial
from ._train import TrainHistory, fit
from .._validation import check_key, check_positive

_FORMAT = "dkjax-generative-model"
_VERSION = 1


class DataScaling(eqx.Module):
    """An affine map between the data's own units and the standardised units a model trains in.

    ``standardize(y) = L^-1 ((y - loc) / scale)`` and ``unstandardize(x) = loc + scale * (L x)``,
    with ``L`` the lower Cholesky factor ``whitening`` of the columns' correlation matrix, or the
    identity when ``whitening`` is ``None`` (per-column standardisation). With ``L``, the data come
    out with mean 0 and covariance ``I``: their best-fit Gaussian is ``N(0, I)``.

    Arguments:
        loc: the data-unit point that maps to 0, shape ``(d,)``.
        scale: the data-unit length that maps to 1, per column, shape ``(d,)``.
        whitening: ``None``, or the lower-triangular ``L`` of shape ``(d, d)`` that decorrelates
            the per-column standardised data.

    Raises:
        ValueError: from ``DataScaling.fit``, for data not of shape ``(n, d)`` with ``n >= 2``,
            with a constant column, or (whitening) with linearly dependent columns.

    Example:
        >>> data = jnp.array([[1.0, 10.0], [3.0, 30.0]])
        >>> scaling = dkjax.DataScaling.fit(data)
        >>> print(scaling.standardize(data))
        [[-1. -1.]
         [ 1.  1.]]
        >>> data = jax.random.normal(jax.random.key(0), (1000, 2)) @ jnp.array([[1.0, 2.0], [0.0, 1.0]])
        >>> white = dkjax.DataScaling.fit(data, whiten=True).standardize(data)
        >>> print(jnp.round(jnp.cov(white, rowvar=False, bias=True), 3) + 0.0)  # + 0.0: no "-0." for a tiny negative
        [[1. 0.]
         [0. 1.]]
    """

    loc: Float[Array, " d"]
    scale: Float[Array, " d"]
    whitening: Float[Array, "d d"] | None = None

    @classmethod
    def fit(cls, data: Float[Array, "n d"], *, whiten: bool = False) -> "DataScaling":
        """Per-column mean and standard deviation of ``data``, and with ``whiten`` their correlation.

        Arguments:
            data: points ``(n, d)``.
            whiten: also decorrelate the columns (full-covariance whitening).

        Returns:
            The ``DataScaling``.

        Raises:
            ValueError: ``data`` not of shape ``(n, d)`` with ``n >= 2``, a constant column
                (it cannot be standardised), named by its index, or with ``whiten`` linearly
                dependent columns (their correlation matrix cannot be inverted).
        """
        data = jnp.asarray(data)
        if data.ndim != 2 or data.shape[0] < 2:
            raise ValueError(f"data must have shape (n, d) with n >= 2; got {data.shape}.")
        loc, scale = jnp.mean(data, axis=0), jnp.std(data, axis=0)
        constant = np.flatnonzero(np.asarray(scale) == 0)
        if constant.size:
            raise ValueError(f"data column(s) {constant.tolist()} are constant and cannot be standardised.")
        if not whiten:
            return cls(loc, scale)
        standard = (data - loc) / scale
        correlation = standard.T @ standard / data.shape[0]
        # Below this smallest eigenvalue the inverse factor amplifies rounding into whole columns.
        if float(jnp.linalg.eigvalsh(correlation)[0]) < 10 * float(jnp.finfo(data.dtype).eps) * data.shape[1]:
            raise ValueError(
                "data columns are linearly dependent (or nearly), so they cannot be whitened; "
                "drop the redundant columns or pass whiten=False."
            )
        return cls(loc, scale, jnp.linalg.cholesky(correlation))

    @classmethod
    def identity(cls, dim: int, dtype=float) -> "DataScaling":
        """The scaling that changes nothing."""
        return cls(jnp.zeros(dim, dtype), jnp.ones(dim, dtype))

    def standardize(self, y: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """Data units to model units."""
        standard = (y - self.loc) / self.scale
        if self.whitening is None:
            return standard
        return jax.scipy.linalg.solve_triangular(self.whitening, standard.T, lower=True).T

    def unstandardize(self, x: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """Model units to data units."""
        correlated = x if self.whitening is None else x @ self.whitening.T
        return self.loc + self.scale * correlated


def sample(
    sde: AbstractSDE,
    initial: InitialSampler,
    n: int,
    *,
    t1: RealScalarLike,
    num_steps: int,
    key: Key,
    t0: RealScalarLike = 0.0,
) -> States:
    """``n`` samples of an SDE's law at ``t1``: initial states from ``initial``, then ``dkjax.simulate``.

    The one sampler of a trained model: ``GenerativeModel.sample`` is this on the model's
    grid, in the data's units. Given initial states instead of a law, use ``dkjax.simulate``.

    Arguments:
        sde: the (trained) model.
        initial: ``initial(key, n) -> (x0, score0)``, the law at ``t0`` (``score0`` unused).
        n: number of samples.
        t1, num_steps, t0: the time grid (use the one the model was trained on).
        key: PRNG key (split into the initial draw's key and the paths' key).

    Returns:
        Array of shape ``(n, d)``.

    Raises:
        ValueError: ``n`` not a positive int, or as ``dkjax.simulate``.
        TypeError: ``key`` not a PRNG key.

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> xs = dkjax.sample(sde, dkjax.GaussianInitial(jnp.zeros(2), 1.0), 1000, t1=1.0,
        ...                   num_steps=50, key=jax.random.key(0))
        >>> print(xs.shape)
        (1000, 2)
    """
    check_positive("n", n, integer=True)
    check_key(key)
    init_key, path_key = jr.split(key)
    x0 = initial(init_key, n)[0]
    return simulate(sde, x0, t1=t1, num_steps=num_steps, key=path_key, t0=t0)


class GenerativeModel(eqx.Module):
    """A trained SDE with everything needed to sample it: initial law, time grid, data scaling.

    Its law at time ``t1``, mapped back by ``scaling``, models the data. Save it with
    ``dkjax.save_model`` and load it with ``dkjax.load_model``.

    Attributes:
        sde: the trained SDE (in standardised units).
        initial: the law at ``t0``, ``initial(key, n) -> (x0, score0)`` (an Equinox module).
        scaling: the map from standardised units back to the data's units.
        t0, t1, num_steps: the Euler-Maruyama grid the model was trained on.
        discrete: the data's discrete columns (``dkjax.DiscreteColumns``), whose samples at
            ``t1`` are moved onto the values those columns take; ``None``: none.

    Example:
        >>> data = jnp.array([[0.0, 10.0], [2.0, 30.0], [1.0, 20.0]])
        >>> model = dkjax.GenerativeModel(sde=dkjax.NeuralSDE(2, key=jax.random.key(0), width=8),
        ...                               initial=dkjax.GaussianInitial(jnp.zeros(2), jnp.ones(2)),
        ...                               scaling=dkjax.DataScaling.fit(data), t0=0.0, t1=1.0, num_steps=10)
        >>> samples = model.sample(1000, key=jax.random.key(1))   # in the data's units
        >>> print(samples.shape, model.dim)
        (1000, 2) 2
    """

    sde: AbstractSDE
    initial: eqx.Module
    scaling: DataScaling
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)
    discrete: DiscreteColumns | None = None

    @property
    def dim(self) -> int:
        """The dimension of the data."""
        return int(self.scaling.loc.shape[0])

    def sample(self, n: int, *, key: Key, t: float | None = None) -> States:
        """``n`` samples of the model's law at time ``t`` (default ``t1``), in the data's units.

        A thin alias: ``dkjax.sample(model.sde, model.initial, n, ...)`` on the model's own
        grid, mapped back by ``model.scaling`` (the same numbers for the same key); at ``t1``,
        discrete columns then take their nearest value (``model.discrete``).

        Arguments:
            n: number of samples (a positive int).
            key: PRNG key.
            t: a time in ``(t0, t1]`` on the training grid; ``None`` means ``t1``.

        Returns:
            Array of shape ``(n, d)``.

        Raises:
            ValueError: ``n`` not a positive int, or ``t`` outside ``(t0, t1]`` or off the grid.
        """
        t = self.t1 if t is None else float(t)
        dt = (self.t1 - self.t0) / self.num_steps
        steps = round((t - self.t0) / dt)
        if not (self.t0 < t <= self.t1) or abs(self.t0 + steps * dt - t) > 1e-9 * max(1.0, abs(t)):
            raise ValueError(
                f"t must lie in ({self.t0}, {self.t1}] on the model's grid of step {dt:.6g}; got {t}."
            )
        xt = self.scaling.unstandardize(sample(self.sde, self.initial, n, t1=t, num_steps=steps, key=key, t0=self.t0))
        return xt if self.discrete is None or steps != self.num_steps else self.discrete.snap(xt)


def _sde_spec(sde: AbstractSDE) -> dict | None:
    """How to rebuild ``sde``'s structure without its weights, or ``None`` if dkjax cannot."""
    if isinstance(sde, NeuralSDE):
        net = sde.drift_net
        return {
            "class": "NeuralSDE",
            "dim": sde.dim,
            "width": net.width_size,
            "depth": net.depth,
            "noise": "scalar" if sde.sigma_bias.shape[0] == 1 else "diagonal",
            "state_dependent": sde.sigma_net is not None,
            "sigma_min": sde.sigma_min,
            "preserve_normal": sde.preserve_normal,
        }
    if isinstance(sde, GradientFlowSDE) and isinstance(sde.potential_net, eqx.nn.MLP):
        net = sde.potential_net
        return {"class": "GradientFlowSDE", "dim": sde.dim, "width": net.width_size, "depth": net.depth,
                "sigma_min": sde.sigma_min, "confinement": sde.confinement}  # fmt: skip
    return None


def save_model(path: str | Path, model: GenerativeModel) -> Path:
    """Writes ``model`` to one file: a JSON header line, then its arrays (Equinox serialisation).

    Arguments:
        path: the file to write (its folder is created).
        model: a ``dkjax.GenerativeModel``.

    Returns:
        The path written.

    Raises:
        TypeError: ``model`` is not a ``GenerativeModel``.

    Example:
        >>> data = jnp.array([[0.0, 10.0], [2.0, 30.0], [1.0, 20.0]])
        >>> model = dkjax.GenerativeModel(sde=dkjax.NeuralSDE(2, key=jax.random.key(0), width=8),
        ...                               initial=dkjax.GaussianInitial(jnp.zeros(2), jnp.ones(2)),
        ...                               scaling=dkjax.DataScaling.fit(data), t0=0.0, t1=1.0, num_steps=10)
        >>> print(dkjax.save_model("moons/model.eqx", model))
        moons/model.eqx
    """
    if not isinstance(model, GenerativeModel):
        raise TypeError(f"model must be a dkjax.GenerativeModel; got {type(model).__name__}.")
    gaussian = isinstance(model.initial, (GaussianInitial, EmpiricalInitial))
    header = {
        "format": _FORMAT,
        "version": _VERSION,
        "sde": _sde_spec(model.sde) if gaussian else None,
        "dim": model.dim,
        "dtype": str(model.scaling.loc.dtype),
        "whitened": model.scaling.whitening is not None,
        "initial_points": model.initial.points.shape[0] if isinstance(model.initial, EmpiricalInitial) else None,
        "t0": model.t0,
        "t1": model.t1,
        "num_steps": model.num_steps,
        "discrete": None if model.discrete is None else [[c, len(v)] for c, v in zip(model.discrete.columns,
                                                                                      model.discrete.levels)],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as file:
        file.write((json.dumps(header) + "\n").encode())
        eqx.tree_serialise_leaves(file, model)
    tmp.replace(path)
    return path


def load_model(path: str | Path, *, like: AbstractSDE | GenerativeModel | None = None) -> GenerativeModel:
    """Reads a model written by ``dkjax.save_model``.

    Arguments:
        path: the file.
        like: an SDE of the saved one's structure (any weights), or a whole
            ``GenerativeModel`` of the saved one's structure (needed when its initial law is
            not a ``dkjax.GaussianInitial``). Not needed for a ``dkjax.NeuralSDE`` with a
            Gaussian initial law: the file records their structure.

    Returns:
        The ``dkjax.GenerativeModel``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a dkjax model file, or the arrays do not match the structure.

    Example:
        >>> data = jnp.array([[0.0, 10.0], [2.0, 30.0], [1.0, 20.0]])
        >>> model = dkjax.GenerativeModel(sde=dkjax.NeuralSDE(2, key=jax.random.key(0), width=8),
        ...                               initial=dkjax.GaussianInitial(jnp.zeros(2), jnp.ones(2)),
        ...                               scaling=dkjax.DataScaling.fit(data), t0=0.0, t1=1.0, num_steps=10)
        >>> path = dkjax.save_model("moons/model.eqx", model)
        >>> loaded = dkjax.load_model("moons/model.eqx")
        >>> key = jax.random.key(2)
        >>> print(loaded.sample(10, key=key).shape, bool(jnp.all(loaded.sample(10, key=key) == model.sample(10, key=key))))
        (10, 2) True
    """
    path = Path(path)
    with open(path, "rb") as file:
        try:
            header = json.loads(file.readline())
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a dkjax model file (written by dkjax.save_model).")
        template = _template(header, like, path)
        try:
            return eqx.tree_deserialise_leaves(file, template)
        except Exception as error:
            raise ValueError(f"{path}: the saved arrays do not match the model's structure: {error}") from error


def _neural_template(spec: dict) -> NeuralSDE:
    options = {name: spec[name] for name in ("width", "depth", "noise", "state_dependent")}
    # Files written before the floor (or preserve_normal) existed have none; sigma_init only sets
    # weights the file replaces.
    floor = spec.get("sigma_min", 0.0)
    return NeuralSDE(spec["dim"], key=jr.key(0), sigma_init=floor + 1.0, sigma_min=floor,
                     preserve_normal=spec.get("preserve_normal", False), **options)  # fmt: skip


def _discrete_template(header: dict, dtype) -> DiscreteColumns | None:
    spec = header.get("discrete")  # files written before discrete columns have none
    if not spec:
        return None
    return DiscreteColumns([c for c, _ in spec], [jnp.arange(k, dtype=dtype) for _, k in spec])


def _template(header: dict, like, path: Path) -> GenerativeModel:
    dim, dtype = header["dim"], jnp.dtype(header["dtype"])
    grid = (header["t0"], header["t1"], header["num_steps"], _discrete_template(header, dtype))
    if isinstance(like, GenerativeModel):
        # The arrays come from the file; so must the time grid and the discrete columns (static parts of the model).
        return GenerativeModel(like.sde, like.initial, like.scaling, *grid)
    spec = header["sde"]
    if like is None:
        if spec is None:
            raise ValueError(f"{path} holds an SDE that dkjax cannot rebuild by itself; pass like=<an SDE of its kind>.")
        like = gradient_flow_template(spec) if spec.get("class") == "GradientFlowSDE" else _neural_template(spec)
    cast = lambda leaf: leaf.astype(dtype) if eqx.is_inexact_array(leaf) else leaf
    sde = jax.tree.map(cast, like)
    num_points = header.get("initial_points")
    if num_points is None:
        initial = GaussianInitial(jnp.zeros(dim, dtype), 1.0)
    else:
        initial = EmpiricalInitial(jnp.zeros((num_points, dim), dtype))
    scaling = DataScaling.identity(dim, dtype)
    if header.get("whitened", False):
        scaling = DataScaling(scaling.loc, scaling.scale, jnp.eye(dim, dtype=dtype))
    return GenerativeModel(sde, initial, scaling, *grid)




def fit_generative(
    data: Float[Array, "num_points d"],
    *,
    key: Key,
    steps: int,
    sde: AbstractSDE | None = None,
    t1: float = 1.0,
    num_steps: int = 50,
    standardize: bool = True,
    whiten: bool = False,
    discrete_columns="auto",
    **fit_options,
) -> tuple[GenerativeModel, TrainHistory]:
    """Fits a generative SDE to ``data`` in its own units: standardise, train, package.

    The data are standardised per column (stored in the model), a ``dkjax.NeuralSDE``
    (unless ``sde`` is given) is trained by ``dkjax.fit`` to carry ``N(0, I)`` at time 0 to
    them at ``t1``, and the selected model comes back as a ``GenerativeModel`` that samples
    in the data's units. With ``whiten=True`` the data are also decorrelated, so that their
    best-fit Gaussian is ``N(0, I)``, and the default model is a ``NeuralSDE`` with
    ``preserve_normal=True``, which carries ``N(0, I)`` to itself before training: training
    starts from the best-fit Gaussian, and model selection (which scores the untrained model
    too) keeps it unless a trained one scores below it on the held-out points beyond their noise.

    Discrete columns (by default every column with at most 10 distinct values, and no more
    than a quarter as many values as rows) are trained on as uniform draws from each value's
    cell, and the model's samples are moved back onto the column's values
    (``dkjax.DiscreteColumns``): a binary column comes out binary.

    Arguments:
        data: the training points ``(n, d)``, in any units (integers are converted to floats).
        key: PRNG key (model initialisation and training).
        steps: optimisation steps.
        sde: the model to train, in standardised units (default ``NeuralSDE(d,
            preserve_normal=whiten)``).
        t1, num_steps: the time horizon and its Euler-Maruyama steps.
        standardize: standardise the data (``False``: train on them as they are).
        whiten: with ``standardize``, also decorrelate the columns and start the default model
            at their best-fit Gaussian (see above).
        discrete_columns: ``"auto"`` (the rule above), or the discrete columns' indices
            (``()``: treat every column as continuous).
        **fit_options: passed on to ``dkjax.fit`` (``validation`` points are given in the
            data's units and standardised like the data).

    Returns:
        ``(model, history)``.

    Raises:
        ValueError, TypeError: as ``dkjax.fit``; ``data`` not numeric or not ``(n, d)``; a NaN or inf
            in ``data`` (its row and column named); a constant data column when standardising;
            linearly dependent columns when whitening; a ``discrete_columns`` entry that is not
            a column index or names a column of one value.

    Example:
        >>> data = dkjax.toy_data("two_moons", jax.random.key(0), 256) * 3.0 + 10.0
        >>> model, history = dkjax.fit_generative(data, key=jax.random.key(1), steps=5, num_steps=10,
        ...                                       num_paths=64, sde=dkjax.NeuralSDE(2, key=jax.random.key(2), width=8),
        ...                                       progress=False)
        >>> print(model.sample(5, key=jax.random.key(3)).shape)
        (5, 2)
    """
    data = as_float_points(data, "data")  # integers converted; a NaN named by row before standardising
    dim = data.shape[1]
    data, discrete = dequantized(data, discrete_columns, key)
    scaling = DataScaling.fit(data, whiten=whiten) if standardize else DataScaling.identity(dim, data.dtype)
    validation = fit_options.get("validation")
    if validation is not None and not isinstance(validation, (int, float)):
        validation = jnp.asarray(as_float_points(validation, "validation"), data.dtype)
        if discrete is not None:
            validation = discrete.dequantize(validation, jr.fold_in(key, DEQUANTIZE_SALT + 1))
        fit_options["validation"] = scaling.standardize(validation)
    model_key, train_key = jr.split(key)
    sde = NeuralSDE(dim, key=model_key, preserve_normal=whiten) if sde is None else sde
    initial = GaussianInitial(jnp.zeros(dim, data.dtype), 1.0)
    trained, history = fit(
        sde, scaling.standardize(data), initial, t1=t1, num_steps=num_steps, key=train_key, steps=steps, **fit_options
    )
    t0 = float(fit_options.get("t0", 0.0))
    return GenerativeModel(trained, initial, scaling, t0, float(t1), num_steps, discrete), history
