"""A generative-benchmark set with one setting changed: model width/depth, training steps or time steps."""
import functools, sys, json
import jax.random as jr
import numpy as np
import dkjax
import benchmarks.generative as g
name, width, depth, steps, num_steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
orig = dkjax.NeuralSDE
dkjax.NeuralSDE = functools.partial(orig, width=width, depth=depth)
import dkjax._generative._model as model_module
model_module.NeuralSDE = dkjax.NeuralSDE  # fit_generative builds its default model from this name
learning_rate = float(sys.argv[6]) if len(sys.argv) > 6 else dkjax.TRAIN_DEFAULTS.learning_rate
model_module.fit = functools.partial(model_module.fit, learning_rate=learning_rate)
cfg = dict(g.SIZES["full"], dk_steps=steps, num_steps=num_steps)
key = jr.fold_in(jr.key(cfg["seed"]), g._stable_index(name))
res, samples = g.run_dataset(name, cfg, key, log=lambda *a: None)
m = res["models"]["DK-SDE"]
tag = f"{name}_w{width}_d{depth}_s{steps}_n{num_steps}" + (f"_lr{learning_rate:g}" if len(sys.argv) > 6 else "")
print(json.dumps({"tag": tag, "ed": m["energy_distance"], "flow": res["models"]["flow"]["energy_distance"],
                  "best": m["best_step"], "seconds": m["seconds"], "curve": [round(p["energy_distance"], 5) for p in m["curve"]]}))
np.save(f"/tmp/disc/{tag}.npy", samples["DK-SDE"])
