"""Mutation check: plant targeted bugs one at a time and confirm that the tests aimed at them fail.

Each mutation replaces an exact piece of library text with a plausible mistake (a flipped sign,
a factor dropped, a step read at the wrong time, an error bar halved) and names the tests that
must catch it. For every mutation the repository is copied to a temporary directory, the edits
are applied there (the working tree is never touched), the named tests run in a fresh pytest
process with ``PYTHONPATH`` pointing at the copy, and the copy is restored.

Run it from the repository root (it is not part of the CI suite: it runs tests many times)::

    python -m tests.mutations                  # every mutation, then a table
    python -m tests.mutations --list           # the mutations, their tests, and stale ones
    python -m tests.mutations --only NAME ...  # some of them
    python -m tests.mutations --include-slow   # also the slow tests named by a mutation
    python -m tests.mutations --baseline       # first check that the named tests pass unmutated
    python -m tests.mutations --only NAME --tests NODE ...  # does this other test catch it?

Runs share a persistent JAX compilation cache in the temporary directory, so the code a
mutation leaves alone compiles once (about 10 s per mutation on 2 cores, 5 minutes for the
baseline).

The exit status is nonzero if any mutation was not caught, if its tests errored instead of
failing, or if a mutation went stale: its old text no longer occurs exactly once in its file,
or a named test no longer exists. Keep the list working as the code moves: when a refactor
moves a line, update the mutation's old text (the message says which mutation and which file).
"""

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info", "runs", "build", "dist"
)


@dataclasses.dataclass(frozen=True)
class Edit:
    """Replace ``old`` (which must occur exactly once) by ``new`` in the file ``path``."""

    path: str
    old: str
    new: str


@dataclasses.dataclass(frozen=True)
class Mutation:
    """A planted bug: its edits and the tests (pytest node ids) that must fail on it."""

    name: str
    description: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    slow_tests: tuple[str, ...] = ()


def _mutation(name, description, edits, tests, slow_tests=()) -> Mutation:
    return Mutation(name, description, tuple(Edit(*e) for e in edits), tuple(tests), tuple(slow_tests))


EST = "tests/test_estimator.py::"
RESP = "tests/test_response.py::"
OBJ = "tests/test_objective.py::"
SIM = "tests/test_simulate.py::"
BASE = "tests/test_baselines.py::"
CAL = "tests/test_calibration.py::"
PROP = "tests/test_properties.py::"
SNAP = "tests/test_snapshots.py::"
SNAPSHOTS = "dkjax/_generative/_snapshots.py"
SNAPSHOT_EVAL, TRAJ = "dkjax/_generative/_snapshot_eval.py", "tests/test_trajectory.py::"

STEP, NOISE, SIMULATE = "dkjax/_engine/_dk_step.py", "dkjax/_engine/_noise.py", "dkjax/_engine/_simulate.py"
JACOBIAN, ENGINE, STATISTICS = "dkjax/_engine/_jacobian.py", "dkjax/_engine/_driver.py", "dkjax/_response/_statistics.py"
OBSERVABLE, DENSITY, STATIONARY = "dkjax/_response/_observable.py", "dkjax/_response/_density.py", "dkjax/_response/_stationary.py"
OBJECTIVE, METRICS = "dkjax/_generative/_objective.py", "dkjax/_generative/_metrics.py"
GRADIENT, ARGUMENTS = "dkjax/_generative/_gradient.py", "dkjax/_generative/_arguments.py"
ESTIMATOR, RATE, BASELINES = "dkjax/_engine/_estimator.py", "dkjax/_engine/_kernel_rate.py", "dkjax/_response/_baselines.py"

MUTATIONS = [
    # ---- the thirteen bugs planted by the review (issue 14), in its order
    _mutation(
        "kernel_score_sign",
        "sign of the diagonal kernel score flipped",
        [(STEP, "return -z / (sigma * jnp.sqrt(dt))", "return z / (sigma * jnp.sqrt(dt))")],
        [EST + "test_ou_score_and_response_match_em_chain"],
    ),
    _mutation(
        "general_kernel_score_untransposed",
        "sigma^-1 instead of sigma^-T in the kernel score of square general noise",
        [(STEP, "return -inverse_and_logabsdet(sigma)[0].T @ z", "return -inverse_and_logabsdet(sigma)[0] @ z")],
        [EST + "test_linear_sde_general_noise_parameters_in_drift_and_noise_matrix",
         PROP + "test_first_step_from_a_point_mass_is_the_transition_kernel"],
    ),
    _mutation(
        "matrix_free_pushforward_first_order",
        "second-order term A^T A^T w dropped from the matrix-free J^-T w",
        [(JACOBIAN, "order: int = eqx.field(static=True, default=2)", "order: int = eqx.field(static=True, default=1)")],
        [EST + "test_matrix_free_agrees_with_exact_in_10d"],
    ),
    _mutation(
        "energy_self_term_halved",
        "energy_weights: the path-to-path term's factor 2 dropped",
        [(OBJECTIVE, "- 2 * to_paths / (m - 1)", "- to_paths / (m - 1)")],
        [OBJ + "test_energy_gradient_matches_exact_ou"],
    ),
    _mutation(
        "energy_baseline_holds_the_path",
        "energy_weights: the baseline is the batch mean of the weight, path m's own included",
        [(OBJECTIVE, "c = (weight - 2 * others_to_data + 2 * others_to_paths) / m", "c = (weight - jnp.mean(weight)) / m")],
        [OBJ + "test_energy_weights_are_unbiased_for_a_handful_of_paths"],
    ),
    _mutation(
        "two_pass_last_parameter_zero",
        "two-pass gradient: the last parameter leaf gets zero",
        [(
            STEP,
            "return jax.tree.map(jnp.add, total, output[1])",
            "g = jax.tree.leaves(output[1]); g[-1] = 0 * g[-1]\n"
            "        return jax.tree.map(jnp.add, total, jax.tree.unflatten(jax.tree.structure(output[1]), g))",
        )],
        [OBJ + "test_gradient_routes_agree"],
    ),
    _mutation(
        "dk_scan_time_one_step_late",
        "the DK scan reads the coefficients at t_{n+1} (simulate does not)",
        [(STEP, "increment = batch_increment(self.static, t, dt, z)\n        step, transpose",
          "increment = batch_increment(self.static, t + dt, dt, z)\n        step, transpose")],
        [EST + "test_time_dependent_ou_score_and_responses_match_em_chain"],
    ),
    _mutation(
        "time_one_step_late_everywhere",
        "simulate and the DK scan both read the coefficients at t_{n+1}",
        [(ENGINE, "t = t0 + n * dt", "t = t0 + (n + 1) * dt")],
        [SIM + "test_simulate_time_dependent_ou_matches_em_chain",
         EST + "test_time_dependent_ou_score_and_responses_match_em_chain"],
    ),
    _mutation(
        "kl_weights_scaled",
        "KL path weights times 1.3 (a 30% gradient error)",
        [(OBJECTIVE, 'c = -sums["weights"] / num_data + 1.0 / x.shape[0]',
          'c = 1.3 * (-sums["weights"] / num_data + 1.0 / x.shape[0])')],
        [OBJ + "test_kl_gradient_matches_exact_smoothed_likelihood"],
    ),
    _mutation(
        "stderr_halved",
        "every i.i.d. standard error (observables, densities, baselines) halved",
        [(STATISTICS, "jnp.where(n > 1, jnp.sqrt(m2 /", "jnp.where(n > 1, 0.5 * jnp.sqrt(m2 /")],
        [CAL + "test_observable_and_density_errors_are_calibrated", RESP + "test_centred_response_is_the_unbiased_sample_covariance"],
        [CAL + "test_error_bars_are_calibrated_over_many_keys"],
    ),
    _mutation(
        "stationary_window_one_segment_short",
        "stationary response: the window reaches back one segment less",
        [(STATIONARY, "r[(k - q) % layout.ring_len]", "r[(k - q + 1) % layout.ring_len]")],
        [RESP + "test_stationary_response_ou_matches_exact_truncated_windows"],
    ),
    _mutation(
        "general_kernel_carrier_dt",
        "general-noise kernel carrier: s^T dSigma s / (2 dt) became / dt",
        [(STEP, "scaled @ covariance @ scaled / (2 * dt)", "scaled @ covariance @ scaled / dt")],
        [EST + "test_kernel_response_general_noise_from_a_point_mass",
         PROP + "test_first_step_from_a_point_mass_is_the_transition_kernel"],
    ),
    _mutation(
        "rate_schedule_at_t0",
        "a kernel-rate schedule evaluated at t0 only",
        [(RATE, "return jnp.asarray(self.schedule(t), jnp.result_type(t))", "return jnp.asarray(self.schedule(0.0 * t), jnp.result_type(t))")],
        [EST + "test_rate_schedule_matches_exact_score_variance"],
    ),
    _mutation(
        "response_mix_divergence_unweighted",
        "the (1 - b) factor on the divergence response dropped (0 < b < 1)",
        [(STEP, "lambda g: -(1 - self.response_mix) * g, d_div", "lambda g: -g, d_div")],
        [RESP + "test_observable_response_ou_matches_em_chain[0.5-float64]"],
    ),
    # ---- the DK step and estimator
    _mutation(
        "matrix_free_logdet_first_order",
        "matrix-free log|det J| probe without its second-order part (dual probe v instead of v - A^T v)",
        [(JACOBIAN, "return (v - at(v))[:, None, :]", "return v[:, None, :]")],
        [EST + "test_matrix_free_agrees_with_exact_in_10d"],
    ),
    _mutation(
        "exact_logdet_untransposed",
        "exact mode: the Jacobian assembled from its columns as rows (d log|det J| = sum(J^-1 * dJ))",
        [(JACOBIAN, "jacobian = eye + jnp.swapaxes(images, 1, 2)", "jacobian = eye + images")],
        [EST + "test_linear_sde_general_noise_parameters_in_drift_and_noise_matrix"],
    ),
    _mutation(
        "exact_pushforward_untransposed",
        "exact mode: J^-1 w instead of J^-T w",
        [(JACOBIAN, 'return jnp.einsum("bki,bk->bi", duals, w)', 'return jnp.einsum("bik,bk->bi", duals, w)')],
        [EST + "test_linear_sde_general_noise_parameters_in_drift_and_noise_matrix"],
    ),
    _mutation(
        "logdet_response_sign",
        "the log|det J| term enters the response with the wrong sign",
        [(STEP, "d_div = transpose((_scale_rows(c, u), _scale_rows(c, duals)))[0]",
          "d_div = transpose((_scale_rows(c, u), _scale_rows(-c, duals)))[0]")],
        [EST + "test_ou_score_and_response_match_em_chain"],
    ),
    _mutation(
        "diagonal_kernel_log_sigma_dropped",
        "diagonal kernel carrier without its -log|sigma| normalisation",
        [(STEP, "-0.5 * residual**2 / (sigma**2 * dt) - jnp.log(jnp.abs(sigma))", "-0.5 * residual**2 / (sigma**2 * dt)")],
        [EST + "test_ou_score_and_response_match_em_chain"],
    ),
    _mutation(
        "general_kernel_trace_halving_dropped",
        "general-noise kernel carrier: tr(P dSigma) / 2 became tr(P dSigma)",
        [(STEP, "- 0.5 * jnp.sum(precision * covariance)", "- jnp.sum(precision * covariance)")],
        [EST + "test_kernel_response_general_noise_from_a_point_mass",
         PROP + "test_first_step_from_a_point_mass_is_the_transition_kernel"],
    ),
    _mutation(
        "point_mass_first_step_response_dropped",
        "from a point mass the first (kernel) step adds no response",
        [(STEP, "DivergenceKernelStep(params, static, jacobian, None, 1.0, kernel_plan, weights, running_cost)",
          "DivergenceKernelStep(params, static, jacobian, None, 0.0, kernel_plan, weights, running_cost)")],
        [EST + "test_kernel_response_general_noise_from_a_point_mass"],
    ),
    _mutation(
        "hutchinson_probe_constant",
        "Hutchinson probe all ones instead of random signs (a biased trace)",
        [(NOISE, "probe = 1 - 2 * (words[:state_dim] & 1).astype(dtype)", "probe = jnp.ones(state_dim, dtype)")],
        [EST + "test_linear_sde_general_noise_parameters_in_drift_and_noise_matrix"],
    ),
    _mutation(
        "initial_response_ignored",
        "dlogp0 (the initial response, also the chain link of stationary segments) ignored",
        [(ESTIMATOR, "fold=PerPathResponse(), acc=dlogp0,", "fold=PerPathResponse(), acc=jax.tree.map(jnp.zeros_like, dlogp0),")],
        [RESP + "test_stationary_response_ou_matches_exact_truncated_windows"],
    ),
    _mutation(
        "auto_rate_without_safety",
        "kernel_rate='auto' returns the measured growth rate without the safety factor",
        [(RATE, "max(self.min_rate, self.safety * float(growth))", "max(self.min_rate, float(growth))")],
        [EST + "test_auto_kernel_rate_doubles_the_covector_growth_rate"],
    ),
    # ---- reductions behind the responses and their error bars
    _mutation(
        "moments_merge_cross_term_dropped",
        "Chan's merge of running moments without the between-chunk term",
        [(STATISTICS, "a + b + d**2 * weight.astype(a.dtype)", "a + b")],
        [RESP + "test_chunks_and_samplers_reproduce_one_run"],
    ),
    _mutation(
        "centring_not_rescaled",
        "centred observable response without the n / (n - 1) rescaling (biased by 1/n)",
        [(OBSERVABLE, "scale = jnp.where(center & (count > 1), ratio, jnp.ones((), flat.dtype))", "scale = 1.0")],
        [RESP + "test_centred_response_is_the_unbiased_sample_covariance"],
    ),
    _mutation(
        "batch_means_stderr_halved",
        "stationary (batch-means) standard errors halved",
        [(STATISTICS, "jnp.where(n > 1, jnp.sqrt(var / jnp.maximum(n, 1)), jnp.nan)",
          "jnp.where(n > 1, 0.5 * jnp.sqrt(var / jnp.maximum(n, 1)), jnp.nan)")],
        [CAL + "test_stationary_errors_are_calibrated"],
        [CAL + "test_error_bars_are_calibrated_over_many_keys"],
    ),
    _mutation(
        "delta_method_uncentred",
        "conditional-mean (delta-method) variance not centred at the ratio",
        [(STATISTICS, "jnp.maximum(w2y2 - 2 * r * w2y + r**2 * s.w2, 0.0)", "jnp.maximum(w2y2, 0.0)")],
        [RESP + "test_density_conditional_means_are_the_bin_sample_means"],
        [CAL + "test_error_bars_are_calibrated_over_many_keys"],
    ),
    _mutation(
        "bin_density_not_per_volume",
        "histogram densities not divided by the bin volume",
        [(DENSITY, "return onehot / self.volume.astype(xs.dtype)", "return onehot * jnp.ones_like(xs[0])")],
        [RESP + "test_density_response_bins_1d_exact_bin_averages"],
    ),
    _mutation(
        "density_kernel_normalisation",
        "Gaussian density kernel normalised with h instead of h^2",
        [(DENSITY, "norm = (2 * math.pi * h**2) ** (-k / 2)", "norm = (2 * math.pi * h) ** (-k / 2)")],
        [RESP + "test_density_response_kernel_points_is_exact_for_the_smoothed_density"],
    ),
    # ---- objectives and metrics
    _mutation(
        "kl_jitter_dropped",
        "KL objective: the data not jittered (smoothing on the model side only)",
        [(OBJECTIVE, "jittered = data + bandwidth * jr.normal(key, data.shape, data.dtype)", "jittered = data")],
        [OBJ + "test_kl_gradient_matches_exact_smoothed_likelihood"],
    ),
    _mutation(
        "jackknife_leave_one_out_sum_wrong",
        "KL jackknife: each coefficient subtracts the whole row's leave-one-out sum, its own term included",
        [(METRICS, "off_max = w * (1.0 + shrink * (1.0 - others + u)) - shrink * w_max * v",
          "off_max = w * (1.0 + shrink * (1.0 - others)) - shrink * w_max * v")],
        [OBJ + "test_jackknife_coefficients_equal_the_leave_one_out_formula"],
    ),
    _mutation(
        "jackknife_others_divided_by_underflowed_sum",
        "KL jackknife: the weights without the largest formed as w / (sum of the others), 0 / 0 when they underflow",
        [(METRICS, "v = jax.nn.softmax(jnp.where(is_max, -jnp.inf, logits), axis=1)",
          "v = w / jnp.sum(jnp.where(is_max, 0.0, w), axis=1, keepdims=True)")],
        [OBJ + "test_jackknife_coefficients_equal_the_leave_one_out_formula"],
    ),
    _mutation(
        "kl_ignores_jackknife_flag",
        "KL module: its jackknife setting never reaches the weights",
        [(OBJECTIVE, "loss, c, ess = kl_weights(x, data, h, key, self.jackknife)", "loss, c, ess = kl_weights(x, data, h, key)")],
        [OBJ + "test_kl_module_jackknifes_by_default_and_checks_its_flag"],
    ),
    _mutation(
        "energy_distance_biased_self_term",
        "energy distance: E|X - X'| averaged over m^2 pairs (self-pairs included) instead of m(m - 1)",
        [(METRICS, "jnp.sum(to_x) / (m * (m - 1))", "jnp.sum(to_x) / (m * m)")],
        [OBJ + "test_energy_distance_is_unbiased_for_small_samples"],
    ),
    _mutation(
        "kde_normaliser_one_dimension",
        "Gaussian KDE normalised as if one-dimensional",
        [(METRICS, "- dim * jnp.log(bandwidth * math.sqrt(2 * math.pi))", "- jnp.log(bandwidth * math.sqrt(2 * math.pi))")],
        [OBJ + "test_smoothed_nll_of_gaussian_samples"],
    ),
    _mutation(
        "two_pass_padding_weighted",
        "two-pass replay in chunks: the padding paths get weight one instead of zero",
        [(GRADIENT, "chunks += [chunked(w, jnp.zeros((padding,) + w.shape[1:], w.dtype)) for w in inputs[3:]]",
          "chunks += [chunked(w, jnp.ones((padding,) + w.shape[1:], w.dtype)) for w in inputs[3:]]")],
        [OBJ + "test_gradient_routes_agree"],
    ),
    _mutation(
        "sliced_wasserstein_directions_not_unit",
        "sliced Wasserstein projects on directions that are not unit vectors",
        [(METRICS, "directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)", "directions = directions")],
        [OBJ + "test_sliced_wasserstein_of_shifted_gaussians"],
    ),
    _mutation(
        "ess_bisection_reversed",
        "ESS bandwidth bisection moves the wrong bound",
        [(OBJECTIVE, "return jnp.where(enough, low, mid), jnp.where(enough, mid, high)",
          "return jnp.where(enough, mid, low), jnp.where(enough, high, mid)")],
        [OBJ + "test_ess_bandwidth_reaches_target"],
    ),
    _mutation(
        "row_block_padding_counted",
        "blocked pairwise sums count the zero rows that pad the last block",
        [(METRICS, "masks = (jnp.arange(num_blocks * size) < num_rows)", "masks = (jnp.arange(num_blocks * size) >= 0)")],
        [OBJ + "test_blocked_pairwise_reductions_equal_the_whole_matrix_formulas"],
    ),
    # ---- baselines
    _mutation(
        "finite_difference_not_halved",
        "central finite differences divided by h instead of 2h",
        [(BASELINES, "return jnp.moveaxis(diff, 0, 1) / 2, final(vector)", "return jnp.moveaxis(diff, 0, 1), final(vector)")],
        [BASE + "test_finite_differences_and_backprop_match_exact_ou"],
    ),
    _mutation(
        "stationary_finite_difference_not_halved",
        "stationary finite differences divided by h instead of 2h",
        [(BASELINES, "2 * h.reshape((1, -1)", "h.reshape((1, -1)")],
        [BASE + "test_finite_difference_stationary_ou"],
    ),
    # ---- the fused step: one linearisation, batch reverse passes
    _mutation(
        "fused_weighted_logdet_unweighted",
        "weighted response: the log|det J| term not weighted by the paths' weights",
        [(STEP, "d_div = transpose((_scale_rows(c, u), _scale_rows(c, duals)))[0]",
          "d_div = transpose((_scale_rows(c, u), duals))[0]")],
        ["tests/test_engine.py::test_fused_step_equals_the_unfused_reference"],
    ),
    _mutation(
        "fused_logdet_gradient_stray_cotangent",
        "grad_x log|det J| read from the linearisation with a stray cotangent on the increment",
        [(STEP, "grad_logdet = transpose_images((jnp.zeros_like(x), duals))[0]",
          "grad_logdet = transpose_images((x, duals))[0]")],
        ["tests/test_engine.py::test_fused_step_equals_the_unfused_reference"],
    ),
    _mutation(
        "fused_step_weights_one_step_late",
        "weighted replay: step n's increments weighted as step n + 1's (snapshot weights switch a step late)",
        [(STEP, "d_eta = self.response(t, dt, x, z, x_next, *fixed, self.weights(n), batched=True)",
          "d_eta = self.response(t, dt, x, z, x_next, *fixed, self.weights(n + 1), batched=True)")],
        [SNAP + "test_snapshot_gradient_is_the_weighted_sum_of_single_time_gradients"],
    ),
    # ---- population snapshots
    _mutation(
        "snapshot_replay_counts_one_step_late",
        "two-pass snapshots: a step's increment also counts towards the observation at that step",
        [(STEP, "return self.c @ (n < self.steps)", "return self.c @ (n <= self.steps)")],
        [SNAP + "test_snapshot_gradient_is_the_weighted_sum_of_single_time_gradients"],
    ),
    _mutation(
        "snapshot_response_read_one_step_early",
        "per-path snapshots: the response recorded one step before the observation time",
        [(GRADIENT, "(eta, x_next), n + 1, self.steps)", "(eta, x_next), n + 2, self.steps)")],
        [SNAP + "test_snapshot_gradient_is_the_weighted_sum_of_single_time_gradients",
         SNAP + "test_snapshot_energy_gradient_matches_exact_ou"],
    ),
    _mutation(
        "snapshot_time_weights_ignored",
        "per-time weights left out of the path weights (the loss keeps them)",
        [(SNAPSHOTS, "c = w[:, None] * jnp.stack", "c = jnp.stack")],
        [SNAP + "test_snapshot_gradient_is_the_weighted_sum_of_single_time_gradients"],
    ),
]

# ---- the training machinery (issue 24): one planted bug per documented promise of fit,
# fit_generative, save/load, checkpoints and resume, the policies and snapshot selection; the tests
# are in tests/test_training_promises.py, or the older test of the same promise where one exists
PROMISES = "tests/test_training_promises.py::"
GEN, TRAIN_TESTS = "tests/test_generative.py::", "tests/test_train.py::"
PATH = "tests/test_path_cost.py::"
SCHED = "tests/test_path_schedule.py::"
DISC = "tests/test_discrete.py::"
DISCRETE = "dkjax/_generative/_discrete.py"
SCHEDULE = "dkjax/_generative/_path_schedule.py"
TRAIN, STATE, POLICIES = "dkjax/_generative/_train.py", "dkjax/_generative/_state.py", "dkjax/_generative/_policies.py"
MODEL, CALLBACKS = "dkjax/_generative/_model.py", "dkjax/_generative/_callbacks.py"

MUTATIONS += [
    _mutation(
        "default_schedule_floor_absolute",
        "default schedule: final_lr_fraction * learning_rate passed where optax takes the fraction",
        [(ARGUMENTS, "optax.cosine_decay_schedule(learning_rate, steps, final_lr_fraction)",
          "optax.cosine_decay_schedule(learning_rate, steps, final_lr_fraction * learning_rate)")],
        [PROMISES + "test_default_optimizer_is_adam_cosine_decayed_to_the_final_fraction"],
    ),
    _mutation(
        "clipping_after_the_optimizer",
        "clip_norm clips the optimiser's update instead of the gradient it receives",
        [(ARGUMENTS, "optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)",
          "optax.chain(optimizer, optax.clip_by_global_norm(clip_norm))")],
        [PROMISES + "test_the_optimizer_receives_the_gradient_clipped_to_clip_norm"],
    ),
    _mutation(
        "clipping_per_element",
        "clip_norm clips each gradient entry, not the global norm",
        [(ARGUMENTS, "optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)", "optax.chain(optax.clip(clip_norm), optimizer)")],
        [PROMISES + "test_the_optimizer_receives_the_gradient_clipped_to_clip_norm"],
    ),
    _mutation(
        "no_evaluation_after_the_last_step",
        "held-out evaluation only every validate_every steps, not after the last one",
        [(TRAIN, "(state.step % selection.validate_every == 0 or state.step == steps)",
          "(state.step % selection.validate_every == 0)")],
        [PROMISES + "test_history_validation_cadence_and_metrics_file"],
    ),
    _mutation(
        "no_selection_returns_the_start_model",
        "without held-out data fit returns the kept parameters (the start) instead of the last",
        [(TRAIN, "chosen = state.best_params if validate is not None and state.history.best_step is not None else state.params",
          "chosen = state.best_params")],
        [PROMISES + "test_checkpoints_every_n_steps_and_at_the_end_and_no_selection_returns_the_last_model"],
    ),
    _mutation(
        "resume_forgets_the_lowest_score",
        "resume starts a fresh model selection instead of the checkpoint's",
        [(STATE, 'self.selection = _Selection.from_record(record.get("selection"))', "self.selection = _Selection()")],
        [PROMISES + "test_resume_restores_the_model_selection"],
    ),
    _mutation(
        "resume_forgets_the_kept_parameters",
        "resume restores the parameters and optimiser state but not the kept (best) parameters",
        [(STATE, "(self.params, self.opt_state, self.best_params), record = loaded",
          "(self.params, self.opt_state, _), record = loaded")],
        [PROMISES + "test_resume_restores_the_model_selection"],
    ),
    _mutation(
        "metrics_file_loses_the_resumed_history",
        "on resume the metrics file holds only the new steps",
        [(CALLBACKS, 'self.file.writelines(json.dumps(r) + "\\n" for r in records)',
          'self.file.writelines(json.dumps(r) + "\\n" for r in records[:0])')],
        [PROMISES + "test_resume_restores_the_model_selection"],
    ),
    _mutation(
        "checkpoints_one_step_off",
        "periodic checkpoints at steps 1, 1 + every, ... instead of every, 2 every, ...",
        [(CALLBACKS, "if self.every is not None and state.step % self.every == 0:",
          "if self.every is not None and state.step % self.every == 1:")],
        [PROMISES + "test_checkpoints_every_n_steps_and_at_the_end_and_no_selection_returns_the_last_model"],
    ),
    _mutation(
        "no_final_checkpoint_after_a_periodic_one",
        "the end-of-run checkpoint skipped once any periodic checkpoint was written",
        [(CALLBACKS, "if self.last != state.step:", "if self.last is None:")],
        [PROMISES + "test_checkpoints_every_n_steps_and_at_the_end_and_no_selection_returns_the_last_model"],
    ),
    _mutation(
        "auto_rate_lowered_when_the_flow_slackens",
        "kernel_rate='auto' takes each pilot's measurement, lowering the rate",
        [(POLICIES, "return max(rate, AutoRate().measure(model, x0, key=key, **grid))",
          "return AutoRate().measure(model, x0, key=key, **grid)")],
        [PROMISES + "test_auto_kernel_rate_follows_the_contraction_upward_never_down"],
    ),
    _mutation(
        "pilot_runs_one_step_late",
        "pilot runs at steps every - 1, 2 every - 1, ... (none before the first step)",
        [(POLICIES, "if step % self.every:", "if (step + 1) % self.every:")],
        [PROMISES + "test_auto_kernel_rate_follows_the_contraction_upward_never_down"],
    ),
    _mutation(
        "auto_rate_restarts_on_resume",
        "a resumed run with kernel_rate='auto' starts from rate 0 instead of the checkpoint's rate",
        [(POLICIES, "def resume(self, saved):\n        return saved", "def resume(self, saved):\n        return self.start()")],
        [TRAIN_TESTS + "test_resume_is_bit_identical"],
    ),
    _mutation(
        "resume_keeps_the_old_fixed_rate",
        "a fixed kernel rate given on resume loses to the checkpoint's",
        [(POLICIES, "def resume(self, saved):\n        return self.rate", "def resume(self, saved):\n        return saved")],
        [GEN + "test_resume_refuses_a_different_schedule_and_keeps_a_new_fixed_rate"],
    ),
    _mutation(
        "stiffness_warns_every_pilot",
        "the stiffness warning repeats at every pilot run",
        [(POLICIES, "self.warned = True", "self.warned = False")],
        [PROMISES + "test_stiffness_warns_once_when_the_drift_outpaces_the_time_step"],
    ),
    _mutation(
        "stiffness_limit_raised",
        "the stiffness check warns above ||grad F|| dt = 1.5 instead of 1",
        [(POLICIES, "limit: float = 1.0", "limit: float = 1.5")],
        [PROMISES + "test_stiffness_warns_once_when_the_drift_outpaces_the_time_step"],
    ),
    _mutation(
        "selection_plain_minimum",
        "model selection keeps the plain minimum, not the latest model within two standard errors",
        [(STATE, "_SELECTION_Z = 2.0", "_SELECTION_Z = 0.0")],
        [GEN + "test_selection_keeps_a_later_model_within_two_standard_errors_of_the_lowest"],
    ),
    _mutation(
        "selection_start_beaten_by_noise",
        "a trained model replaces the untrained one when it scores lower by any margin, noise included",
        [(STATE, "self.start - value <= self._noise(terms, self.start_terms)", "self.start - value <= 0.0")],
        [GEN + "test_selection_keeps_the_untrained_model_until_a_trained_one_beats_it_beyond_noise"],
    ),
    _mutation(
        "patience_one_evaluation_late",
        "patience stops after one more evaluation without a new lowest score",
        [(STATE, "return patience is None or since_lowest < patience", "return patience is None or since_lowest <= patience")],
        [GEN + "test_patience_stops_after_evaluations_without_improvement"],
    ),
    _mutation(
        "saved_model_time_origin_dropped",
        "save_model writes t0 = 0 whatever the model's time origin",
        [(MODEL, '"t0": model.t0,', '"t0": 0.0,')],
        [PROMISES + "test_save_and_load_keep_every_field_and_the_samples"],
    ),
    _mutation(
        "saved_model_noise_floor_dropped",
        "save_model leaves a NeuralSDE's sigma_min out of the header (loaded with floor 0)",
        [(MODEL, '"state_dependent": sde.sigma_net is not None,\n            "sigma_min": sde.sigma_min,',
          '"state_dependent": sde.sigma_net is not None,')],
        [PROMISES + "test_save_and_load_keep_every_field_and_the_samples"],
    ),
    _mutation(
        "heldout_points_scaled_not_centred",
        "fit_generative divides validation points by the data's scale without subtracting its mean",
        [(MODEL, 'fit_options["validation"] = scaling.standardize(validation)',
          'fit_options["validation"] = validation / scaling.scale')],
        [PROMISES + "test_fit_generative_standardises_held_out_points_given_in_data_units"],
    ),
    _mutation(
        "standardize_false_ignored",
        "fit_generative standardises even with standardize=False",
        [(MODEL, "scaling = DataScaling.fit(data, whiten=whiten) if standardize else DataScaling.identity(dim, data.dtype)",
          "scaling = DataScaling.fit(data, whiten=whiten)")],
        [PROMISES + "test_fit_generative_standardises_held_out_points_given_in_data_units"],
    ),
    _mutation(
        "snapshot_heldout_weights_normalised",
        "snapshot held-out score: per-time weights divided by their sum",
        [("dkjax/_generative/_train.py", "score = score + w * energy_distance(states[k], points)",
          "score = score + w / sum(time_weights) * energy_distance(states[k], points)")],
        [PROMISES + "test_snapshot_held_out_score_is_the_weighted_sum_of_the_per_time_distances"],
    ),
    _mutation(
        "snapshot_heldout_fraction_unweighted",
        "a held-out fraction of snapshots loses the data's per-time weights (all 1)",
        [(SNAPSHOTS, "return snaps.replace_points([p[0] for p in pairs]), snaps.replace_points([p[1] for p in pairs])",
          "return snaps.replace_points([p[0] for p in pairs]), Snapshots(dict(zip(snaps.times, [p[1] for p in pairs])))")],
        [PROMISES + "test_snapshot_held_out_score_is_the_weighted_sum_of_the_per_time_distances"],
    ),
    _mutation(
        "interpolation_baseline_fraction_from_zero",
        "score_held_out interpolates its baseline at (t - t_a) / t_b instead of (t - t_a) / (t_b - t_a)",
        [("dkjax/_generative/_snapshot_eval.py", "fraction = (time - t_a) / (snaps.times[k] - t_a)",
          "fraction = (time - t_a) / snaps.times[k]")],
        [PROMISES + "test_score_held_out_baselines_interpolate_the_neighbours_or_repeat_the_last_snapshot"],
    ),
    _mutation(
        "forecast_baseline_first_snapshot",
        "past the last training time the baseline repeats the first snapshot, not the last",
        [("dkjax/_generative/_snapshot_eval.py", 'return snaps.points[-1], "last snapshot"',
          'return snaps.points[0], "last snapshot"')],
        [PROMISES + "test_score_held_out_baselines_interpolate_the_neighbours_or_repeat_the_last_snapshot"],
    ),
    # ---- issue 23: the stationary window chosen on the plateau, and the FD baseline's lost paths
    _mutation(
        "plateau_differences_ignore_shared_paths",
        "window differences paired across different paths: their error is the two errors combined",
        [("dkjax/_response/_stationary.py", "batch_means(leaf[:, j] - leaf[:, i], batch_mask",
          "batch_means(leaf[:, j] - leaf[:, i][:, ::-1], batch_mask")],
        ["tests/test_stationary.py::test_auto_window_lands_on_the_ou_plateau"],
    ),
    _mutation(
        "plateau_takes_the_shortest_window",
        "the shortest window is chosen without comparing it with the longer ones",
        [("dkjax/_response/_stationary.py", "if not any(moved(i, j, z) for j in longer):", "if True:")],
        ["tests/test_stationary.py::test_auto_window_lands_on_the_ou_plateau"],
    ),
    _mutation(
        "no_plateau_goes_unsaid",
        "no warning when no window reaches the plateau",
        [("dkjax/_response/_stationary.py", "    if worst is not None:\n        _warn_no_plateau(",
          "    if False:\n        _warn_no_plateau(")],
        ["tests/test_stationary.py::test_windows_too_short_warn_and_report_no_plateau"],
    ),
    _mutation(
        "fd_stationary_counts_only_nonfinite_states",
        "finite-difference stationary: a copy still finite but diverging is averaged in",
        [("dkjax/_response/_baselines.py", "lost = ~jnp.all(jnp.abs(xs) <= bound, axis=-1)",
          "lost = ~jnp.all(jnp.isfinite(xs), axis=-1)")],
        ["tests/test_stationary.py::test_finite_difference_stationary_counts_lost_paths"],
    ),
    # ---- issue 20: off-by-ones in the push-forward protocol's start
    _mutation(
        "push_forward_starts_two_times_early",
        "push_forward_score starts at t_{k-2} (from the cells of t_{k-1}) instead of t_{k-1}",
        [(SNAPSHOT_EVAL, "start, end = snaps.times[k - 1], snaps.times[k]",
          "start, end = snaps.times[k - 2], snaps.times[k]")],
        [TRAJ + "test_push_forward_starts_from_the_previous_time_and_its_cells"],
    ),
    _mutation(
        "push_forward_cells_of_two_times_before",
        "push_forward_score pushes the cells of t_{k-2} over the interval (t_{k-1}, t_k]",
        [(SNAPSHOT_EVAL, "before, target = jnp.asarray(snaps.points[k - 1]), snaps.points[k]",
          "before, target = jnp.asarray(snaps.points[k - 2]), snaps.points[k]")],
        [TRAJ + "test_push_forward_starts_from_the_previous_time_and_its_cells"],
    ),
    _mutation(
        "push_forward_absolute_start_one_interval_early",
        "push_forward_score simulates the right cells and step count but from the absolute time t_{k-2}",
        [(SNAPSHOT_EVAL, "simulate(sde, before, t0=start, t1=end, num_steps=steps, key=key)",
          "simulate(sde, before, t0=2 * start - end, t1=start, num_steps=steps, key=key)")],
        [TRAJ + "test_push_forward_starts_from_the_previous_time_and_its_cells"],
    ),
    # ---- path costs (the kinetic prior)
    _mutation(
        "path_cost_pathwise_term_dropped",
        "the running cost's gradient at fixed states is left out: only the law's response remains",
        [("dkjax/_engine/_dk_step.py", "            if self.running_cost is not None:\n                d_eta",
          "            if False:\n                d_eta")],
        [PATH + "test_kinetic_gradient_matches_the_exact_chain"],
    ),
    _mutation(
        "path_cost_response_dropped",
        "the running cost enters the loss and its pathwise gradient but not the path weights",
        [(GRADIENT, "weights = jnp.concatenate([objective.c, running.T], axis=1)",
          "weights = jnp.concatenate([objective.c, 0.0 * running.T], axis=1)")],
        [PATH + "test_kinetic_gradient_matches_the_exact_chain"],
    ),
    _mutation(
        "path_cost_observed_one_step_early",
        "the running cost at X_n weighs the responses up to step n - 1 instead of n",
        [(GRADIENT, "jnp.arange(1, num_steps, dtype=jnp.int32)])", "jnp.arange(0, num_steps - 1, dtype=jnp.int32)])")],
        [PATH + "test_kinetic_gradient_matches_the_exact_chain"],
    ),
    _mutation(
        "path_cost_padded_paths_count",
        "the zero-weight paths that pad the last replay chunk carry the running cost's pathwise gradient",
        [(GRADIENT, "chunks += [chunked(w, jnp.zeros((padding,) + w.shape[1:], w.dtype)) for w in inputs[3:]]",
          "chunks += [chunked(c, jnp.zeros((padding,) + c.shape[1:], c.dtype)), "
          "chunked(running, jnp.repeat(running[:1], padding))]")],
        [PATH + "test_kinetic_replay_in_chunks_equals_one_replay"],
    ),
    _mutation(
        "path_cost_costs_recorded_one_step_late",
        "the recorder files the cost of X_n under step n + 1",
        [("dkjax/_engine/_simulate.py", "costs.at[n].set(cost)", "costs.at[n + 1].set(cost)")],
        [PATH + "test_kinetic_gradient_matches_the_exact_chain"],
    ),
    _mutation(
        "growing_paths_share_proportional_to_paths",
        "GrowingPaths: each stage's share of the steps grows with its path count instead of falling",
        [(SCHEDULE, "inverse = [1.0 / n for n in counts]", "inverse = [float(n) for n in counts]")],
        [SCHED + "test_growing_paths_stages_cost_the_same"],
    ),
    _mutation(
        "growing_paths_last_step_below_final",
        "GrowingPaths: a short run may end before its last stage, short of num_paths",
        [(SCHEDULE, "* steps), steps - 1)", "* steps), steps)")],
        [SCHED + "test_growing_paths_end_at_the_final_count_for_short_runs"],
    ),
    _mutation(
        "fit_ignores_path_schedule",
        "fit: every step simulates num_paths whatever the schedule",
        [(TRAIN, "num_paths = sampling.path_schedule.num_paths(step, steps, sampling.num_paths)",
          "num_paths = sampling.num_paths")],
        [SCHED + "test_each_growing_stage_is_the_constant_fit_of_its_count"],
    ),
    _mutation(
        "dequantize_cells_half_width",
        "DiscreteColumns: the draws fill only half of each value's cell",
        [(DISCRETE, "low[index] + u * (high[index] - low[index])", "low[index] + u * (high[index] - low[index]) / 2")],
        [DISC + "test_dequantize_draws_uniformly_in_each_cell_and_snap_undoes_it"],
    ),
    _mutation(
        "model_never_snaps",
        "GenerativeModel.sample returns the continuous samples at t1 too",
        [(MODEL, "steps != self.num_steps else self.discrete.snap(xt)", "steps != -1 else xt")],
        [DISC + "test_generative_model_snaps_at_t1_only_and_keeps_its_columns_through_a_file"],
    ),
    _mutation(
        "held_out_points_not_dequantized",
        "fit_generative compares continuous model samples with held-out points still on their discrete values",
        [(MODEL, "validation = discrete.dequantize(validation,", "validation = (lambda v, k: v)(validation,")],
        [DISC + "test_fit_generative_dequantizes_held_out_points_like_the_training_ones"],
    ),
]


# --------------------------------------------------------------------------------------


def _test_file_and_name(node_id: str) -> tuple[str, str]:
    path, _, name = node_id.partition("::")
    return path, name.split("[")[0]


def stale_reasons(mutation: Mutation, root: Path = ROOT) -> list[str]:
    """Why ``mutation`` no longer applies to the tree at ``root`` (empty if it does)."""
    reasons, texts = [], {}
    for edit in mutation.edits:  # in order, as apply() makes them
        file = root / edit.path
        if not file.exists():
            reasons.append(f"{edit.path} does not exist")
            continue
        text = texts.setdefault(file, file.read_text())
        count = text.count(edit.old)
        if count != 1:
            where = "not found" if count == 0 else f"found {count} times (must be unique)"
            reasons.append(f"old text {edit.old!r} {where} in {edit.path}")
        texts[file] = text.replace(edit.old, edit.new, 1)
    for node_id in mutation.tests + mutation.slow_tests:
        path, name = _test_file_and_name(node_id)
        file = root / path
        if not file.exists() or not re.search(rf"^def {re.escape(name)}\b", file.read_text(), re.MULTILINE):
            reasons.append(f"test {node_id} does not exist")
    return reasons


def apply(mutation: Mutation, root: Path) -> dict[Path, str]:
    """Applies the edits in the copy at ``root``; returns the original texts to restore."""
    originals = {}
    for edit in mutation.edits:
        file = root / edit.path
        text = file.read_text()
        originals.setdefault(file, text)
        file.write_text(text.replace(edit.old, edit.new, 1))
    return originals


def run_tests(node_ids, root: Path, timeout: float, cache_dir: Path) -> tuple[int, str, float]:
    """Runs pytest on ``node_ids`` in a fresh process importing the copy at ``root``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    # A persistent compilation cache shared by the runs: code a mutation leaves alone compiles once.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_dir))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *node_ids]
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout + done.stderr, time.monotonic() - start
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        return -1, output + f"\n(timed out after {timeout:.0f} s)", time.monotonic() - start


def _first_failure(output: str) -> str:
    """The first failing test and how it failed (an assertion, or an exception the mutation caused)."""
    match = re.search(r"^FAILED (\S+)", output, re.MULTILINE)
    test = match.group(1).split("::", 1)[-1] if match else ""
    error = re.search(r"^E\s+(\w+(?:\.\w+)*(?:Error|Exception|Warning))\b", output, re.MULTILINE)
    return f"{test} ({error.group(1)})" if error else test


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutations and exit (stale ones flagged)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--include-slow", action="store_true", help="also run the slow tests a mutation names")
    parser.add_argument("--baseline", action="store_true", help="first check that the named tests pass unmutated")
    parser.add_argument("--tests", nargs="+", metavar="NODE", help="run these tests instead of the named ones")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per mutation (default 1200)")
    args = parser.parse_args(argv)

    names = [m.name for m in MUTATIONS]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        print(f"duplicate mutation names: {sorted(duplicates)}", file=sys.stderr)
        return 2
    selected = MUTATIONS
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            print(f"unknown mutation(s): {unknown}; see --list", file=sys.stderr)
            return 2
        selected = [m for m in MUTATIONS if m.name in args.only]

    stale = {m.name: stale_reasons(m) for m in selected}
    if args.list:
        for m in selected:
            print(f"{m.name}: {m.description}")
            for node in m.tests + tuple(f"{t} (slow)" for t in m.slow_tests):
                print(f"    {node}")
            for reason in stale[m.name]:
                print(f"    STALE: {reason}")
        print(f"{len(selected)} mutations, {sum(bool(r) for r in stale.values())} stale")
        return 1 if any(stale.values()) else 0

    def tests_of(m: Mutation):
        if args.tests:
            return tuple(args.tests)
        return m.tests + (m.slow_tests if args.include_slow else ())

    rows, failures = [], 0
    with tempfile.TemporaryDirectory(prefix="dkjax-mutations-") as tmp:
        copy, cache = Path(tmp) / "repo", Path(tmp) / "jax-cache"
        shutil.copytree(ROOT, copy, ignore=_COPY_IGNORE)
        if args.baseline:
            union = list(dict.fromkeys(t for m in selected if not stale[m.name] for t in tests_of(m)))
            code, output, seconds = run_tests(union, copy, args.timeout * len(selected), cache)
            if code != 0:
                print(output[-6000:])
                print(f"baseline: the named tests fail without any mutation (exit {code}, {seconds:.0f} s)")
                return 2
            print(f"baseline: {len(union)} tests pass unmutated ({seconds:.0f} s)", flush=True)
        for m in selected:
            if stale[m.name]:
                rows.append((m.name, "STALE", 0.0, "; ".join(stale[m.name])))
                failures += 1
                print(f"{m.name}: STALE: {'; '.join(stale[m.name])}", flush=True)
                continue
            originals = apply(m, copy)
            try:
                code, output, seconds = run_tests(tests_of(m), copy, args.timeout, cache)
            finally:
                for file, text in originals.items():
                    file.write_text(text)
            if code == 1:
                status, detail = "caught", _first_failure(output)
            elif code == 0:
                status, detail = "NOT CAUGHT", "all named tests passed"
            else:
                status, detail = "ERROR", f"pytest exit {code}: " + " | ".join(output.strip().splitlines()[-3:])
            if status != "caught":
                failures += 1
                print(output[-4000:])
            rows.append((m.name, status, seconds, detail))
            print(f"{m.name}: {status} ({seconds:.0f} s) {detail}", flush=True)

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'mutation':{width}}  {'result':10}  {'time':>6}  caught by / reason")
    for name, status, seconds, detail in rows:
        print(f"{name:{width}}  {status:10}  {seconds:5.0f}s  {detail}")
    caught = sum(r[1] == "caught" for r in rows)
    print(f"\n{caught} of {len(rows)} mutations caught" + ("" if args.include_slow else " (slow tests not run)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
