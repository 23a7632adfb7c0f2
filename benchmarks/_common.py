"""Shared plumbing for the benchmark scripts: sizes, TOML configs, result folders, tables."""

import argparse
import json
import platform
import time
import tomllib
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def setup(name: str, config_file: str, description: str) -> tuple[dict, Path, str]:
    """Parses ``--size``, reads ``configs/<config_file>`` section ``[size]``, makes the results folder."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size", choices=("small", "full"), default="small",
                        help="small: a 2-core CPU in minutes; full: one GPU")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/<name>)")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    with open(ROOT / "configs" / config_file, "rb") as f:
        config = tomllib.load(f)
    if args.size not in config:
        raise ValueError(f"configs/{config_file} has no [{args.size}] section.")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / name
    out.mkdir(parents=True, exist_ok=True)
    return {**config.get("common", {}), **config[args.size]}, out, args.size


def machine() -> str:
    device = jax.devices()[0]
    return f"{device.platform}:{getattr(device, 'device_kind', '')} ({platform.processor() or platform.machine()})"


class Timer:
    """Wall time of a block, with the result blocked on so asynchronous dispatch is counted."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def to_json(value):
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "shape"):
        array = np.asarray(value)
        return array.item() if array.ndim == 0 else array.tolist()
    return value


def write_results(out: Path, payload: dict, table_md: str, title: str) -> None:
    """Writes ``results.json`` and ``results.md`` and prints the table."""
    (out / "results.json").write_text(json.dumps(to_json(payload), indent=2, allow_nan=True))
    (out / "results.md").write_text(f"# {title}\n\n{table_md}\n")
    print(f"\n{title}\n\n{table_md}\n\nwritten to {out}")


def time_call(function, *args, repeats: int = 5) -> dict:
    """Compile-and-first-call time and the median and minimum of ``repeats`` warm calls.

    Every call is blocked until ready, so asynchronous dispatch is counted.
    """
    with Timer() as first:
        jax.block_until_ready(function(*args))
    times = []
    for _ in range(repeats):
        with Timer() as warm:
            jax.block_until_ready(function(*args))
        times.append(warm.seconds)
    times.sort()
    return {"compile_and_first_s": first.seconds, "median_s": times[len(times) // 2], "min_s": times[0]}


def compiled_memory(jitted, *args) -> dict:
    """XLA's own accounting of a jitted function's device memory, in bytes.

    ``peak_bytes`` = arguments + outputs + temporaries - aliased buffers: what the call
    needs, free of allocator and runtime noise.
    """
    stats = jitted.lower(*args).compile().memory_analysis()
    peak = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    return {"temp_bytes": stats.temp_size_in_bytes, "peak_bytes": peak - stats.alias_size_in_bytes}
