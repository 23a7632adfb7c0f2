"""The ``dkjax`` command line: ``train``, ``sample`` and ``response`` (argparse subcommands), and ``--version``.

The benchmark suite is not part of the package: from a clone of the repository it runs as
``python -m benchmarks.run --suite quick``.

Each subcommand is added by an ``_add_<name>(subparsers)`` function that sets its handler and
its own parser (so that a usage error shows the subcommand's usage line); further subcommands
plug in the same way.
"""

import argparse
import sys
from pathlib import Path

from ._run_dir import _CONFIG_FILE, _DEFAULT_CONFIG, _new_run_dir
from ._train_command import _sample, _train


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
        help="train a generative SDE (or fit an SDE's parameters) on data, with forward-only DK gradients",
        description="Train a NeuralSDE (or an SDE class) on a toy set, simulated data or your own .npy/.csv file "
        "([data] path) from a TOML config; writes a run folder with the config, model.eqx (the trained model, "
        "which samples itself), checkpoints, metrics.jsonl, eval.json, samples.png and loss.png.",
        examples="  dkjax train --config configs/two_moons.toml\n"
        "  dkjax train --config configs/two_moons.toml --set train.steps=100 --set data.name=pinwheel --out runs/pw\n"
        "  dkjax train --set data.path=measurements.csv --out runs/mine   # your own data, standardised\n"
        "  dkjax train --resume runs/pw          # continue after an interruption, bit-identically\n",
    )  # fmt: skip
    _add_config_arguments(train, f"{_DEFAULT_CONFIG} if present")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.set_defaults(handler=_train, parser=train)


def _add_sample(subparsers) -> None:
    sample = _subparser(
        subparsers, "sample", help="draw samples from a trained run",
        description="Draw samples of a dkjax train run's model (RUN_DIR/model.eqx) into a .npy or .csv file, in "
        "the data's own units (a CSV has a header row: the data file's column names, else x1, x2, ...). In Python: "
        "dkjax.load_model('RUN_DIR/model.eqx').sample(n, key=...).",
        examples="  dkjax sample --run runs/pw --num 10000 --out samples.npy --seed 1\n"
        "  dkjax sample --run runs/pw --num 1000 --out out/half_way.npy --time 0.5\n"
        "  dkjax sample --run runs/pw --num 1000 --out samples.csv\n",
    )  # fmt: skip
    sample.add_argument("--run", required=True, metavar="RUN_DIR", help="a folder written by dkjax train")
    sample.add_argument("--num", type=int, required=True, help="number of samples")
    sample.add_argument("--out", required=True, help="output .npy or .csv file (its folder is created)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed")
    sample.add_argument("--time", type=float, help="a time on the model's grid in (0, t1] (default: t1, the data)")
    sample.set_defaults(handler=_sample, parser=sample)


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
    response.set_defaults(handler=_response, parser=response)


def _version() -> str:
    from .. import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``dkjax`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="dkjax", description="Divergence-kernel responses and DK-SDE training.",
        epilog="The benchmark suite runs from a clone of the repository: python -m benchmarks.run --suite quick",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"dkjax {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train(subparsers)
    _add_sample(subparsers)
    _add_response(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dkjax`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args, args.parser)
