"""Which states ``dkjax.simulate`` returns (in the manner of diffrax's ``SaveAt``), and the step of each save time."""

import math
from collections.abc import Sequence

import equinox as eqx

# Relative tolerance of "on the step grid": times written in decimal (0.1, 0.3) miss the
# grid of dt = 0.1 by rounding only.
GRID_TOLERANCE = 1e-6


def _as_times(ts) -> tuple[float, ...] | None:
    """``ts`` as a tuple of finite floats (hashable, for a static field), or ``None``."""
    if ts is None:
        return None
    if isinstance(ts, (str, bytes)) or not isinstance(ts, Sequence) and not hasattr(ts, "__len__"):
        raise ValueError(f"ts must be a sequence of times; got {ts!r}.")
    times = []
    for t in list(ts):
        if isinstance(t, bool) or not isinstance(t, (int, float)) and getattr(t, "ndim", None) != 0:
            raise ValueError(f"every time in ts must be a finite number; got {t!r}.")
        if not math.isfinite(float(t)):
            raise ValueError(f"every time in ts must be a finite number; got {float(t)}.")
        times.append(float(t))
    if not times:
        raise ValueError("ts must hold at least one time (or be None).")
    return tuple(times)


class SaveAt(eqx.Module):
    """Which states ``dkjax.simulate`` returns: at ``t0``, at the times ``ts``, at ``t1``.

    The states are recorded inside the scan when the path passes a save time, so memory holds
    one array per save time and does not grow with ``num_steps``.

    Arguments:
        t0: keep the initial states.
        t1: keep the final states.
        ts: times to keep, increasing, on the step grid ``t0 + n (t1 - t0) / num_steps`` and
            in ``(t0, t1]`` (checked by ``simulate``, which knows the grid).

    Raises:
        ValueError: nothing to save, or ``ts`` empty, not increasing or holding a non-finite
            or non-numeric time (named).

    Example:
        >>> sde = dkjax.OrnsteinUhlenbeck(theta=1.0, sigma=0.5)
        >>> xs = dkjax.simulate(sde, jnp.zeros((100, 1)), t1=1.0, num_steps=20, key=jax.random.key(0),
        ...                     save_at=dkjax.SaveAt(t0=True, ts=[0.5, 1.0]))
        >>> print(xs.shape)
        (3, 100, 1)
    """

    t0: bool = eqx.field(default=False, static=True)
    t1: bool = eqx.field(default=False, static=True)
    ts: tuple[float, ...] | None = eqx.field(default=None, static=True, converter=_as_times)

    def __check_init__(self):
        if not (self.t0 or self.t1 or self.ts):
            raise ValueError("SaveAt must save something: give t0=True, t1=True or ts.")
        if self.ts is not None and any(b <= a for a, b in zip(self.ts, self.ts[1:])):
            raise ValueError(f"ts must be increasing; got {list(self.ts)}.")

    @property
    def final_only(self) -> bool:
        """Whether only ``t1`` is saved: ``simulate`` then returns the states ``(M, d)`` without a save axis."""
        return self.t1 and not self.t0 and self.ts is None


def grid_steps(times: Sequence[float], t0: float, t1: float, num_steps: int) -> tuple[int, ...]:
    """The step index of each time on the grid ``t0 + n (t1 - t0) / num_steps``.

    Raises:
        ValueError: a time outside ``(t0, t1]`` or off the grid, named.
    """
    t0, t1 = float(t0), float(t1)
    dt = (t1 - t0) / num_steps
    steps = []
    for t in times:
        t = float(t)
        n = round((t - t0) / dt)
        if not t0 < t <= t1 * (1 + GRID_TOLERANCE) + GRID_TOLERANCE:
            raise ValueError(f"time {t} lies outside (t0, t1] = ({t0}, {t1}].")
        if abs(t0 + n * dt - t) > GRID_TOLERANCE * max(1.0, abs(t), abs(dt)) or n < 1:
            raise ValueError(
                f"time {t} is not on the step grid t0 + n dt with dt = (t1 - t0) / num_steps = {dt:.6g}; "
                f"the nearest grid times are {t0 + max(n - 1, 1) * dt:.6g} and {t0 + max(n, 1) * dt:.6g}."
            )
        steps.append(min(n, num_steps))
    return tuple(steps)
