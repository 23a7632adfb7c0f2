"""Sharding the path axis over devices, on one host or on many (``jax.distributed``).

Every dkjax entry point is a ``vmap`` over paths inside a ``lax.scan`` over steps, and the
noise of path ``i`` at step ``n`` depends on ``(key, n, path_offset + i)`` only, ``i`` being
the row of the path in the (global) array. Putting the leading path axis of the inputs on
a 1-D device mesh is therefore all it takes: XLA's sharding propagation (GSPMD) splits the
scan over the devices, draws each device's noise locally, and turns the reductions over
paths (means, standard errors, training gradients ``sum_m c_m eta_m``) into all-reduce
collectives. The results equal a single-device run up to the reassociation of those sums.

Multi-host (``jax.distributed.initialize``): the default mesh spans the devices of every
process, and ``shard_paths`` assembles each process's rows into one global array, so the
same calls run one ensemble over all hosts; the row of a path in that global array is its
noise index, so no noise is used twice.
"""

from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._custom_types import Key

PATH_AXIS = "paths"


def path_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"paths"`` over ``devices`` (default: every device of every process).

    Under ``jax.distributed.initialize`` the default mesh spans all hosts, its devices in
    process order, so a path-sharded global array holds process 0's paths first.

    Arguments:
        devices: the devices to use (default ``jax.devices()``, ordered by process; pass
            ``jax.local_devices()`` to keep a multi-process run's arrays on this process).

    Returns:
        A ``jax.sharding.Mesh`` with the single axis ``"paths"``.

    Raises:
        ValueError: an empty list of devices.

    Example:
        >>> mesh = dkjax.path_mesh()          # every device (of every process)
        >>> print(mesh.axis_names, mesh.size == len(jax.devices()))
        ('paths',) True
    """
    if devices is None:
        devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    devices = list(devices)
    if not devices:
        raise ValueError("path_mesh needs at least one device.")
    return Mesh(np.asarray(devices), (PATH_AXIS,))


def path_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """The ``NamedSharding`` that splits a leading path axis over ``mesh``'s ``"paths"`` axis."""
    mesh = path_mesh() if mesh is None else mesh
    if PATH_AXIS not in mesh.axis_names:
        raise ValueError(f"the mesh must have an axis named {PATH_AXIS!r}; got axes {mesh.axis_names}.")
    return NamedSharding(mesh, PartitionSpec(PATH_AXIS))


def _check_divisible(leaves, num_devices: int, whose: str = "") -> None:
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError("shard_paths needs arrays with a leading path axis; got a scalar.")
        if shape[0] % num_devices:
            raise ValueError(
                f"the number of paths{whose} ({shape[0]}) must be divisible by the number of devices{whose} "
                f"({num_devices}) to shard the path axis; use a multiple of {num_devices} paths."
            )


def shard_paths(tree, mesh: Mesh | None = None):
    """Places the leading (path) axis of every array in ``tree`` across the devices of ``mesh``.

    Pass the result (initial states ``x0``, ``score0``, per-path ``dlogp0``) to
    ``simulate``, ``divergence_kernel``, ``observable_response`` or ``dkjax.fit``: the
    computation then runs on all devices, with outputs sharded the same way and
    reductions over paths done as collectives.

    With several processes (``jax.distributed.initialize``) and a mesh spanning them (the
    default), every process passes its own rows, the same number on each, and gets the
    global array: process 0's rows first, then process 1's, and so on. The estimators take
    it unchanged and return the same reductions (responses, errors, counts) on every process.

    Arguments:
        tree: an array or a pytree of arrays, each with a leading path axis: all the paths
            with one process, this process's paths with several.
        mesh: a mesh with axis ``"paths"`` (default ``dkjax.path_mesh()``, every device).

    Returns:
        The same tree, every leaf a ``jax.Array`` sharded along its first axis.

    Raises:
        ValueError: a leaf whose number of paths is not divisible by the number of devices
            (per process, with several), or processes passing different numbers of paths.

    Example:
        >>> x0 = dkjax.shard_paths(jnp.zeros((4 * jax.device_count(), 2)))  # paths split over the devices
        >>> res = dkjax.divergence_kernel(dkjax.OrnsteinUhlenbeck(1.0, 0.5), x0, t1=1.0, num_steps=10,
        ...                               key=jax.random.key(0))
        >>> print(x0.sharding.spec, res.x.shape == x0.shape)
        P('paths',) True
    """
    sharding = path_sharding(mesh)
    leaves = jax.tree.leaves(tree)
    if sharding.is_fully_addressable:
        _check_divisible(leaves, sharding.mesh.size)
        return jax.tree.map(lambda leaf: jax.device_put(leaf, sharding), tree)
    # Every process reaches this collective before any can raise, so a bad input fails on all of them.
    rows = np.asarray([np.shape(leaf)[0] if np.ndim(leaf) else -1 for leaf in leaves], np.int64)
    everyone = multihost_utils.process_allgather(rows)  # (processes, leaves)
    if not np.array_equal(everyone, np.broadcast_to(rows, everyone.shape)):
        raise ValueError("every process must pass shard_paths the same number of paths (rows of each array).")
    _check_divisible(leaves, len(sharding.addressable_devices), " on this process")
    return jax.tree.map(lambda leaf: jax.make_array_from_process_local_data(sharding, leaf), tree)


def constrain_paths(tree, mesh: Mesh | None = None):
    """Inside ``jit``: ``with_sharding_constraint`` of every leaf's path axis to ``mesh``."""
    sharding = path_sharding(mesh)
    _check_divisible(jax.tree.leaves(tree), sharding.mesh.size)
    return jax.tree.map(lambda leaf: jax.lax.with_sharding_constraint(leaf, sharding), tree)


def sharded_initial(
    initial: Callable[[Key, int], tuple], mesh: Mesh | None = None
) -> Callable[[Key, int], tuple]:
    """Wraps an initial law ``initial(key, n) -> (x0, score0)`` so its samples are path-sharded.

    ``dkjax.fit`` draws the initial states inside its jitted training step; with the
    wrapped law the whole step (both passes of the DK gradient, the objective's weights
    and the gradient's sum over paths) runs sharded over ``mesh``, the sum over paths
    becoming an all-reduce. Draws whose ``n`` is not divisible by the number of devices
    (``fit``'s shape probe and small pilot runs) are left unsharded.

    Arguments:
        initial: the initial law, ``initial(key, n) -> (x0, score0 or None)``.
        mesh: a mesh with axis ``"paths"`` (default ``dkjax.path_mesh()``).

    Returns:
        A callable with the same signature whose outputs are sharded along the path axis.

    Raises:
        ValueError: (from the wrapped call) a mesh without a ``"paths"`` axis.

    Example:
        >>> initial = dkjax.sharded_initial(dkjax.GaussianInitial(jnp.zeros(2), 1.0))
        >>> x0, score0 = initial(jax.random.key(0), 4 * jax.device_count())  # e.g. for dkjax.fit
        >>> print(x0.sharding.spec)
        P('paths',)
    """
    mesh = path_mesh() if mesh is None else mesh

    def wrapped(key, n):
        x0, score0 = initial(key, n)
        if n % mesh.size:
            return x0, score0
        x0 = constrain_paths(x0, mesh)
        return x0, None if score0 is None else constrain_paths(score0, mesh)

    return wrapped


def host_path_offset(paths_per_host: int, process_index: int | None = None) -> int:
    """The first global path index of this host: ``process_index * paths_per_host``.

    Only for arrays each host keeps to itself (sharded over ``path_mesh(jax.local_devices())``
    or unsharded): every host then calls the estimators with the same key and this
    ``path_offset``, so the hosts draw disjoint blocks of one ensemble, and combines the
    hosts' results itself. The global arrays of ``shard_paths`` need no offset: the
    estimators number their paths by the global rows.

    Arguments:
        paths_per_host: paths each host simulates.
        process_index: this host's index (default ``jax.process_index()``).

    Returns:
        The ``path_offset`` to pass to ``simulate``, ``divergence_kernel`` and friends.

    Raises:
        ValueError: ``paths_per_host`` not a positive int, or path indices beyond int32.

    Example:
        >>> offset = dkjax.host_path_offset(65536)   # 0 on process 0, 65536 on process 1, ...
        >>> res = dkjax.divergence_kernel(dkjax.OrnsteinUhlenbeck(1.0, 0.5), jnp.zeros((8, 1)), t1=1.0,
        ...                               num_steps=10, key=jax.random.key(0), path_offset=offset)
        >>> print(offset, res.x.shape)
        0 (8, 1)
    """
    if isinstance(paths_per_host, bool) or not isinstance(paths_per_host, (int, np.integer)) or paths_per_host < 1:
        raise ValueError(f"paths_per_host must be a positive int; got {paths_per_host!r}.")
    index = jax.process_index() if process_index is None else process_index
    offset = int(index) * int(paths_per_host)
    if offset + paths_per_host > np.iinfo(np.int32).max:
        raise ValueError("path indices must fit in int32: process_index * paths_per_host is too large.")
    return offset
