"""The ``dkjax`` command line: ``train``, ``sample``, ``response`` and ``bench`` (argparse subcommands).

Each subcommand is added by an ``_add_<name>(subparsers)`` function that sets its handler,
so further subcommands plug in the same way.
"""

import argparse
import datetime
import json
import sys
from pathlib import Path

_DEFAULT_CONFIG = Path("configs/two_moons.toml")
_CONFIG_FILE = "config.toml"


def _dtype(config):
    import jax
    import jax.numpy as jnp

    if config["train"]["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    return jnp.dtype(config["train"]["dtype"])


def _dim(config) -> int:
    return config["data"]["dim"] if config["data"]["name"] == "simulated" else 2


def _initial(config, dtype):
    import jax.numpy as jnp

    from ._data import gaussian_initial

    mean = jnp.full(_dim(config), config["model"]["initial_mean"], dtype)
    return gaussian_initial(mean, config["model"]["initial_std"])


def _data_system(config, dtype):
    from ._config_systems import build_system, check_dimension

    data_cfg = config["data"]
    sde = build_system(
        data_cfg["system"], data_cfg["parameters"], dtype, name_key="data.system", parameters_key="data.parameters"
    )
    check_dimension(sde, data_cfg["dim"], dtype, "data.dim", data_cfg["system"])
    return sde


def _data_points(config, key, n: int, dtype):
    """``n`` points: a toy set, or snapshots at ``train.t1`` of ``data.system`` from the initial law."""
    import jax.random as jr

    from ._data import toy_data
    from ._simulate import simulate

    if config["data"]["name"] != "simulated":
        return toy_data(config["data"]["name"], key, n).astype(dtype)
    init_key, path_key = jr.split(key)
    x0 = _initial(config, dtype)(init_key, n)[0]
    sde = _data_system(config, dtype)
    return simulate(sde, x0, t1=config["train"]["t1"], num_steps=config["data"]["num_steps"], key=path_key)


def _model(config, dtype):
    """The model to train: a ``NeuralSDE`` or a config-named SDE with its initial parameters."""
    import equinox as eqx
    import jax
    import jax.random as jr

    from ._config_systems import build_system, check_dimension
    from ._neural import NeuralSDE

    model_cfg = config["model"]
    if model_cfg["name"] == "neural":
        model = NeuralSDE(
            _dim(config), key=jr.key(model_cfg["seed"]), width=model_cfg["width"], depth=model_cfg["depth"],
            noise=model_cfg["noise"], sigma_init=model_cfg["sigma_init"],
            state_dependent=model_cfg["state_dependent"],
        )  # fmt: skip
    else:
        model = build_system(
            model_cfg["name"], model_cfg["parameters"], dtype, name_key="model.name", parameters_key="model.parameters"
        )
        check_dimension(model, _dim(config), dtype, "data.dim", model_cfg["name"])
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model)


def _check_systems(config) -> None:
    """Builds the model (and the data system) so that their config errors come before any work."""
    dtype = _dtype(config)
    _model(config, dtype)
    if config["data"]["name"] == "simulated":
        _data_system(config, dtype)


def _build(config):
    """Data, held-out data, model, initial law and optimiser described by ``config``."""
    import jax.random as jr
    import optax

    dtype = _dtype(config)
    data_cfg, train_cfg = config["data"], config["train"]
    data_key = jr.key(data_cfg["seed"])
    data = _data_points(config, jr.fold_in(data_key, 0), data_cfg["num_points"], dtype)
    heldout = _data_points(config, jr.fold_in(data_key, 1), data_cfg["heldout_points"], dtype)
    schedule = optax.cosine_decay_schedule(
        train_cfg["learning_rate"], train_cfg["steps"], train_cfg["final_lr_fraction"]
    )
    return data, heldout, _model(config, dtype), _initial(config, dtype), optax.adam(schedule)


def _new_run_dir(config, out) -> Path:
    """``--out`` if given, else ``runs/<run.name>-<timestamp>``."""
    if out is not None:
        return Path(out)
    return Path("runs") / f"{config['run']['name']}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _auto(value):
    return None if value == "auto" else value


def _evaluate(config, model, initial, data, heldout, run_dir: Path, records, quiet: bool) -> dict:
    import jax.numpy as jnp
    import jax.random as jr

    from ._config_systems import parameter_labels
    from ._metrics import energy_distance, sliced_wasserstein, smoothed_nll
    from ._plots import plot_loss, plot_samples
    from ._train import sample

    eval_cfg, train_cfg = config["eval"], config["train"]
    key = jr.key(eval_cfg["seed"])
    n = eval_cfg["num_samples"]
    samples = sample(model, initial, n, t1=train_cfg["t1"], num_steps=train_cfg["num_steps"], key=key)
    mean, cov = jnp.mean(data, 0), jnp.atleast_2d(jnp.cov(data.T))  # a 1x1 matrix for 1-D data
    gaussian = mean + jr.normal(jr.fold_in(key, 1), (n, data.shape[1]), data.dtype) @ jnp.linalg.cholesky(cov).T
    fresh = _data_points(config, jr.fold_in(key, 2), n, data.dtype)
    metrics = {
        "energy_distance": float(energy_distance(samples, heldout)),
        "energy_distance_gaussian": float(energy_distance(gaussian, heldout)),
        "energy_distance_data": float(energy_distance(fresh, heldout)),
        "sliced_wasserstein": float(sliced_wasserstein(samples, heldout, key=jr.fold_in(key, 3))),
        "sliced_wasserstein_gaussian": float(sliced_wasserstein(gaussian, heldout, key=jr.fold_in(key, 3))),
        "heldout_nll": float(smoothed_nll(samples, heldout, eval_cfg["bandwidth"])),
        "heldout_nll_gaussian": float(smoothed_nll(gaussian, heldout, eval_cfg["bandwidth"])),
    }
    if config["model"]["name"] != "neural":
        import jax
        import numpy as np

        from ._sde import parameters

        values = np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(parameters(model))])
        metrics["parameters"] = dict(zip(parameter_labels(model), map(float, values)))
    (run_dir / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if data.shape[1] >= 2:  # a scatter of the first two coordinates
        title = f"energy distance {metrics['energy_distance']:.4f} (Gaussian {metrics['energy_distance_gaussian']:.4f})"
        plot_samples(samples, heldout, run_dir / "samples.png", title)
    if records:
        plot_loss(records, run_dir / "loss.png")
    if not quiet:
        for name, value in metrics.items():
            if isinstance(value, dict):
                for label, number in value.items():
                    print(f"  {name + ' ' + label:28s} {number:.5g}")
            else:
                print(f"  {name:28s} {value:.5g}")
    return metrics


def _train(args, parser) -> int:
    from ._config import ConfigError, dump_config, load_config

    if args.resume is not None and args.config is not None:
        parser.error("--resume RUN_DIR reads RUN_DIR/config.toml; do not also give --config.")
    try:
        if args.resume is not None:
            run_dir = Path(args.resume)
            if not (run_dir / _CONFIG_FILE).is_file():
                raise ConfigError(f"--resume: {run_dir / _CONFIG_FILE} does not exist.")
            config = load_config(run_dir / _CONFIG_FILE, args.set)
            _check_systems(config)
        else:
            path = args.config if args.config is not None else (_DEFAULT_CONFIG if _DEFAULT_CONFIG.is_file() else None)
            config = load_config(path, args.set)
            _check_systems(config)
            run_dir = _new_run_dir(config, args.out)
            if (run_dir / "checkpoints").exists():
                raise ConfigError(f"--out: {run_dir} already holds a run; use --resume {run_dir} to continue it.")
    except ConfigError as error:
        parser.error(str(error))

    import jax.random as jr

    from ._train import fit

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / _CONFIG_FILE).write_text(dump_config(config))
    data, heldout, model, initial, optimizer = _build(config)
    cfg = config["train"]
    if not args.quiet:
        print(f"dkjax train: {config['data']['name']}, {cfg['steps']} steps, run folder {run_dir}")
    model, history = fit(
        model, data, initial, t1=cfg["t1"], num_steps=cfg["num_steps"], key=jr.key(cfg["seed"]), steps=cfg["steps"],
        optimizer=optimizer, num_paths=cfg["num_paths"], batch_size=cfg["batch_size"],
        bandwidth=_auto(cfg["bandwidth"]), min_bandwidth=_auto(cfg["min_bandwidth"]), ess_target=cfg["ess_target"],
        kernel_rate=cfg["kernel_rate"], kernel_rate_every=cfg["kernel_rate_every"], objective=cfg["objective"],
        gradient=cfg["gradient"], path_chunk=None if cfg["path_chunk"] == "all" else cfg["path_chunk"],
        clip_norm=cfg["clip_norm"], checkpoint_dir=run_dir / "checkpoints",
        checkpoint_every=cfg["checkpoint_every"], resume=args.resume is not None,
        metrics_file=run_dir / "metrics.jsonl", progress=not args.quiet,
    )  # fmt: skip
    if history.stop_reason is not None:
        print(f"dkjax train: {history.stop_reason}", file=sys.stderr)
        print(f"dkjax train: run folder {run_dir}", file=sys.stderr)
        return 1
    metrics = _evaluate(config, model, initial, data, heldout, run_dir, history.records, args.quiet)
    print(
        f"dkjax train: finished {cfg['steps']} steps, final loss {history.loss[-1]:.4g}, energy distance to "
        f"held-out data {metrics['energy_distance']:.4g}; run folder {run_dir}"
    )
    return 0


def _sample(args, parser) -> int:
    import numpy as np

    from ._checkpoint import load_checkpoint_prefix
    from ._config import ConfigError, load_config
    from ._train import sample

    run_dir = Path(args.run)
    try:
        if not (run_dir / _CONFIG_FILE).is_file():
            raise ConfigError(f"--run: {run_dir / _CONFIG_FILE} does not exist; is {run_dir} a dkjax train folder?")
        config = load_config(run_dir / _CONFIG_FILE)
        _check_systems(config)
    except ConfigError as error:
        parser.error(str(error))
    if args.num < 1:
        parser.error(f"--num must be >= 1; got {args.num}.")
    import equinox as eqx
    import jax.random as jr

    _, _, template, initial, _ = _build(config)
    params, static = eqx.partition(template, eqx.is_inexact_array)
    try:
        params, record = load_checkpoint_prefix(run_dir / "checkpoints", params)
    except ValueError as error:
        parser.error(str(error))
    model = eqx.combine(params, static)
    cfg = config["train"]
    xs = sample(model, initial, args.num, t1=cfg["t1"], num_steps=cfg["num_steps"], key=jr.key(args.seed))
    np.save(args.out, np.asarray(xs))
    print(f"dkjax sample: {args.num} samples from step {record['step']} of {run_dir} written to {args.out}")
    return 0


def _add_config_arguments(parser, default_config: str) -> None:
    parser.add_argument("--config", type=Path, help=f"TOML config (default: {default_config})")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config key (repeatable)"
    )
    parser.add_argument("--out", help="run folder (default: runs/<run.name>-<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or tables; only the final summary line")


def _subparser(subparsers, name: str, help: str, description: str, examples: str):
    return subparsers.add_parser(
        name, help=help, description=description, epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip


def _add_train(subparsers) -> None:
    train = _subparser(
        subparsers, "train",
        help="train a neural SDE generative model with forward-only DK gradients",
        description="Train a NeuralSDE on a 2-D toy data set from a TOML config; writes a run folder with the "
        "config, checkpoints, metrics.jsonl, eval.json, samples.png and loss.png.",
        examples="  dkjax train --config configs/two_moons.toml\n"
        "  dkjax train --config configs/two_moons.toml --set train.steps=100 --set data.name=pinwheel --out runs/pw\n"
        "  dkjax train --resume runs/pw          # continue after an interruption, bit-identically\n",
    )  # fmt: skip
    _add_config_arguments(train, f"{_DEFAULT_CONFIG} if present")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.set_defaults(handler=_train)


def _add_sample(subparsers) -> None:
    sample = _subparser(
        subparsers, "sample", help="draw samples from a trained run",
        description="Draw samples from the last checkpoint of a dkjax train run folder into a .npy file.",
        examples="  dkjax sample --run runs/pw --num 10000 --out samples.npy --seed 1\n",
    )  # fmt: skip
    sample.add_argument("--run", required=True, metavar="RUN_DIR", help="a folder written by dkjax train")
    sample.add_argument("--num", type=int, required=True, help="number of samples")
    sample.add_argument("--out", required=True, help="output .npy file")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed")
    sample.set_defaults(handler=_sample)


def _response(args, parser) -> int:
    from . import _response_command as command
    from ._config import ConfigError, dump_config, load_config

    try:
        config = load_config(args.config, args.set, command.RESPONSE_SCHEMA)
        plan = command.prepare(config)
    except ConfigError as error:
        parser.error(str(error))
    run_dir = _new_run_dir(config, args.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / _CONFIG_FILE).write_text(dump_config(config))
    cfg = config["response"]
    if not args.quiet:
        print(f"dkjax response: {config['system']['name']}, {cfg['num_paths']} paths to T = {cfg['t1']}, "
              f"run folder {run_dir}")  # fmt: skip
    try:
        results = command.run(config, plan, run_dir, args.quiet)
    except (ValueError, FloatingPointError) as error:  # the library's own checks, e.g. a singular Sigma
        print(f"dkjax response: {error}", file=sys.stderr)
        return 1
    print(
        f"dkjax response: {len(results['observables'])} observable(s) x {len(plan.labels)} parameter(s) from "
        f"{results['num_paths']} paths ({results['num_nonfinite']} non-finite excluded, "
        f"{results['num_nonfinite_spinup']} lost in the spin-up) in "
        f"{results['seconds']:.1f} s; kernel rate {results['kernel_rate']:.3g}; run folder {run_dir}"
    )
    return 0


def _add_response(subparsers) -> None:
    from ._response_command import OBSERVABLES, SYSTEMS

    response = _subparser(
        subparsers, "response",
        help="linear responses d/dparam E[phi(X_T)] of a built-in or user SDE",
        description="Estimate the derivative of E[phi(X_T)] with respect to every parameter of an SDE by the "
        "divergence-kernel method (dkjax.observable_response), with standard errors. The system is one of "
        f"{', '.join(SYSTEMS)} or a user class given as module:Class (or path/to/file.py:Class); observables "
        f"are {', '.join(f'{name} ({what})' for name, what in OBSERVABLES.items())} or module:function. Writes config.toml, results.json and response.png.",
        examples="  dkjax response --config configs/lorenz96_response.toml\n"
        "  dkjax response --config configs/lorenz96_response.toml --set response.num_paths=20000 --quiet\n"
        "  dkjax response --set system.name=my_sdes:Duffing --set 'system.parameters={ a = 1.0, s = 0.5 }' "
        "--set initial.dim=1\n",
    )  # fmt: skip
    _add_config_arguments(response, "an Ornstein-Uhlenbeck example")
    response.set_defaults(handler=_response)


def _bench(args, parser) -> int:
    import importlib

    root = Path(__file__).resolve().parent.parent
    try:
        if (root / "benchmarks" / "run.py").is_file() and str(root) not in sys.path:
            sys.path.insert(0, str(root))
        suite = importlib.import_module("benchmarks.run")
    except ImportError as error:
        print(
            f"dkjax bench: the benchmark suite (benchmarks/run.py) is not importable ({error}). It ships with the "
            "dkjax repository, not with the installed package: run dkjax bench from a clone of the repository.",
            file=sys.stderr,
        )
        return 2
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    suite.main(["--suite", args.suite, *extra])  # returns its results; failures raise
    print(f"dkjax bench: suite {args.suite} finished")
    return 0


def _add_bench(subparsers) -> None:
    bench = _subparser(
        subparsers, "bench", help="run the benchmark suite (needs the repository's benchmarks/ folder)",
        description="Run the benchmark suite benchmarks/run.py of the dkjax repository. Arguments after -- go "
        "to the suite unchanged.",
        examples="  dkjax bench --suite quick\n  dkjax bench --suite full -- --help\n",
    )  # fmt: skip
    bench.add_argument("--suite", choices=("quick", "full"), default="quick", help="quick: minutes on a CPU; full: a GPU")
    bench.add_argument("extra", nargs=argparse.REMAINDER, help="arguments passed on to the suite (after --)")
    bench.set_defaults(handler=_bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``dkjax`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="dkjax", description="Divergence-kernel responses and DK-SDE training.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train(subparsers)
    _add_sample(subparsers)
    _add_response(subparsers)
    _add_bench(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dkjax`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args, parser)
