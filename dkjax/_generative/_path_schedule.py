"""How many model paths each training step simulates: constant, or growing as training proceeds."""

import abc

import equinox as eqx

from .._validation import check_positive


class AbstractPathSchedule(eqx.Module):
    """The number of model paths at each optimisation step of ``dkjax.fit``: ``fit(path_schedule=...)``.

    Subclasses implement ``num_paths(step, steps, final)``: the paths of step ``step``
    (``0 <= step < steps``) of a run whose last steps simulate ``final`` paths (``fit``'s
    ``num_paths``). ``fit`` compiles one training step per distinct count.

    Arguments:
        None here; each subclass documents its own fields.

    Raises:
        TypeError: when instantiated itself (it is abstract).

    Example:
        >>> print(isinstance(dkjax.GrowingPaths(), dkjax.AbstractPathSchedule))
        True
    """

    @abc.abstractmethod
    def num_paths(self, step: int, steps: int, final: int) -> int:
        """The paths that step ``step`` of ``steps`` simulates, ending at ``final``."""

    def counts(self, steps: int, final: int) -> tuple[int, ...]:
        """The distinct path counts of a run of ``steps`` steps, in the order they are used."""
        seen = dict.fromkeys(self.num_paths(step, steps, final) for step in range(steps))
        return tuple(seen)


class ConstantPaths(AbstractPathSchedule):
    """Every step simulates ``fit``'s ``num_paths`` (the default).

    Arguments:
        None.

    Example:
        >>> print(dkjax.ConstantPaths().counts(800, 1024))
        (1024,)
    """

    def num_paths(self, step, steps, final):
        return final


class GrowingPaths(AbstractPathSchedule):
    """Few paths early, ``fit``'s ``num_paths`` late: the path count doubles from ``start``.

    The counts are ``start, 2 start, 4 start, ...`` up to ``num_paths`` (the last one is
    ``num_paths`` itself), and stage ``k`` lasts a share of the steps proportional to
    ``1 / paths``, so each stage costs the same: with ``start = num_paths / 4`` the stages take
    4/7, 2/7 and 1/7 of the steps, and a fit costs 3/7 of one at constant ``num_paths``; the
    last step always simulates ``num_paths``. Fewer paths also mean a wider kernel under
    ``dkjax.KL``'s bandwidth rule (the same effective sample size is spread over fewer paths).

    It trades quality for time: on the generative benchmark it was quicker but worse on six of
    eight sets, since the fine structure is learnt in the last steps at the full count. Use it
    for quick exploratory fits; ``fit``'s default is ``dkjax.ConstantPaths()``.

    Arguments:
        start: the paths of the first stage (at least 2; ``num_paths`` if larger).

    Raises:
        ValueError: ``start`` not an integer >= 2.

    Example:
        >>> schedule = dkjax.GrowingPaths(start=256)
        >>> print(schedule.counts(700, 1024), schedule.num_paths(399, 700, 1024), schedule.num_paths(400, 700, 1024))
        (256, 512, 1024) 256 512
    """

    start: int = 256

    def __check_init__(self):
        check_positive("start", self.start, integer=True)
        if self.start < 2:
            raise ValueError(f"GrowingPaths: start must be >= 2; got {self.start}.")

    def num_paths(self, step, steps, final):
        counts = [min(self.start, final)]
        while counts[-1] < final:
            counts.append(min(2 * counts[-1], final))
        # stage k ends after the share sum_{j <= k} (1 / n_j) / sum_j (1 / n_j) of the steps; the last step is final's
        inverse = [1.0 / n for n in counts]
        ends = [min(round(sum(inverse[: k + 1]) / sum(inverse) * steps), steps - 1) for k in range(len(counts) - 1)]
        return next((n for n, end in zip(counts, ends) if step < end), final)
