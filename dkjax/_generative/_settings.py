"""The tuned defaults of DK-SDE training, in one place.

``dkjax.fit`` takes its keyword defaults from ``TRAIN_DEFAULTS`` and the ``[train]`` section of
``dkjax train``'s config takes its defaults from the same object, so the library call and the
command line train the same way unless told otherwise.
"""

import dataclasses

from ._path_schedule import AbstractPathSchedule, ConstantPaths


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Settings of ``dkjax.fit`` that have tuned defaults (the time grid and step count have none).

    Attributes:
        num_paths: model paths simulated per optimisation step (by the last steps).
        path_schedule: how the path count grows over a run (``dkjax.GrowingPaths``,
            ``dkjax.ConstantPaths``).
        batch_size: data points per step (all of them when the data set is smaller).
        learning_rate: Adam's initial learning rate.
        final_lr_fraction: the cosine schedule decays the learning rate to this fraction of
            ``learning_rate`` over the run.
        kernel_rate: ``"auto"`` (measured by a pilot run and never lowered) or a number.
        kernel_rate_every: optimisation steps between two pilot runs of the automatic rate.
        ess_target: the bandwidth rule keeps the kernel weights' mean effective sample size
            at least this large.
        objective: ``"kl"`` (smoothed likelihood) or ``"energy"`` (energy distance).
        gradient: the gradient route's shorthand, ``"auto"``, ``"per_path"`` or ``"two_pass"``
            (``dkjax.AutoGradient``, ``dkjax.PerPathGradient``, ``dkjax.TwoPassGradient``).
        lean_threshold: with ``gradient="auto"``, models with more parameters than this use
            the two-pass gradient (measured faster above a few hundred parameters: it never
            forms per-path parameter arrays); smaller models carry per-path responses.
        clip_norm: gradients are clipped to this global norm.
        validation_fraction: share of the data held out for model selection when no
            validation set is given.
        validate_every: optimisation steps between two held-out evaluations.
        validation_samples: model samples drawn for each held-out evaluation.

    Example:
        >>> settings = dkjax.TrainSettings(num_paths=256, objective="energy")
        >>> print(settings.num_paths, settings.objective, settings.learning_rate == dkjax.TRAIN_DEFAULTS.learning_rate)
        256 energy True
    """

    num_paths: int = 1024
    path_schedule: AbstractPathSchedule = ConstantPaths()
    batch_size: int = 1024
    learning_rate: float = 3e-3
    final_lr_fraction: float = 0.1
    kernel_rate: float | str = "auto"
    kernel_rate_every: int = 25
    ess_target: float = 32.0
    objective: str = "kl"
    gradient: str = "auto"
    lean_threshold: int = 256
    clip_norm: float = 1.0
    validation_fraction: float = 0.1
    validate_every: int = 50
    validation_samples: int = 2048


TRAIN_DEFAULTS = TrainSettings()
