"""Issue 19 item 4, paths: two moons and digits (8 PCs) at fit's defaults but num_paths in {256, 512, 1024}.

Same data parts, keys and selection as benchmarks.generative's DK-SDE row; test energy distance with
8192 samples; process CPU seconds of the whole fit call.
"""
import json
import sys
import time

import jax.numpy as jnp
import jax.random as jr

import dkjax
from benchmarks.generative import FLOW_VALIDATION, SIZES, _stable_index, load_dataset

cfg = SIZES["full"]
out = []
for name in sys.argv[1].split(","):
    key = jr.fold_in(jr.key(cfg["seed"]), _stable_index(name))
    data_key, dk_key, flow_key, sample_key, sw_key = jr.split(key, 5)
    parts = load_dataset(name, cfg, data_key)
    fit_rows = len(parts["train"]) - round(FLOW_VALIDATION * len(parts["train"]))
    train, val, test = (jnp.asarray(parts[p]) for p in ("train", "val", "test"))
    train = train[:fit_rows]
    dim = train.shape[1]
    for paths in map(int, sys.argv[2].split(",")):
        model_key, fit_key = jr.split(dk_key)
        initial = dkjax.GaussianInitial(jnp.zeros(dim, train.dtype), 1.0)
        cpu, wall = time.process_time(), time.perf_counter()
        model, history = dkjax.fit(dkjax.NeuralSDE(dim, key=model_key), train, initial, key=fit_key, steps=cfg["dk_steps"],
                                   validation=val, progress=False, t1=1.0, num_steps=cfg["num_steps"], num_paths=paths)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        x = dkjax.sample(model, initial, cfg["num_samples"], key=jr.fold_in(sample_key, 1), t1=1.0, num_steps=cfg["num_steps"])
        ed = float(dkjax.energy_distance(x, test))
        row = {"set": name, "paths": paths, "test_ed": ed, "cpu_s": cpu, "wall_s": wall, "best_step": history.best_step,
               "best_val": min(v["energy_distance"] for v in history.validation)}
        print(json.dumps(row), flush=True)
