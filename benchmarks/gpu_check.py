"""GPU check: `fit` with Keras's default `jit_compile="auto"` in every mode.

On a machine with a GPU, Keras's `"auto"` compiles the train step with XLA
when every layer reports `supports_jit`, as `DynamicMLMMasking` does. For
each output mode this builds the small encoder of `in_model_cost.py` with
the masking layer at its input, runs `fit` steps with the default
`jit_compile`, and prints what Keras chose, the masking's share of a step
(step with masking minus step without, over step with) and the layer's
tokens/s on its own jitted. On a CPU-only machine it runs the same
steps (there `"auto"` leaves XLA off on TensorFlow) and says so.

It covers the three Keras backends: by default it runs itself once per
backend, each in a fresh process (`KERAS_BACKEND` is read at import);
`--backends jax` picks some. On JAX and PyTorch the `masked_lm` mode is
not run (it needs TensorFlow: it raises `NotImplementedError` there).

    .venv/bin/python benchmarks/gpu_check.py [--backends tensorflow,jax,torch] [--smoke]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import in_model_cost  # noqa: E402

MODES = ("ids", "fit", "dict", "masked_lm")
BACKENDS = ("tensorflow", "jax", "torch")


def accelerators():
    """The active backend's GPUs, by name (an empty list on a CPU)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [g.name for g in tf.config.list_physical_devices("GPU")]


def median_step(model, ids, steps):
    model.train_on_batch(ids, ids)  # compile and warm up
    return statistics.median(in_model_cost.step_seconds(model, ids) for _ in range(steps))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, a few steps, the active backend only")
    parser.add_argument("--backends", default=None,
                        help="comma-separated backends (default: all three; --smoke: the active one)")
    args = parser.parse_args()
    backend = keras.backend.backend()
    wanted = args.backends.split(",") if args.backends else (
        [backend] if args.smoke else list(BACKENDS))
    if wanted != [backend]:
        # One fresh process per backend: KERAS_BACKEND is read at import.
        status = 0
        for name in wanted:
            argv = [sys.executable, os.path.abspath(__file__), "--backends", name]
            for option in ("layers", "width", "batch", "length", "steps"):
                argv += [f"--{option}", str(getattr(args, option))]
            argv += ["--smoke"] if args.smoke else []
            status |= subprocess.run(argv, env={**os.environ, "KERAS_BACKEND": name}).returncode
        return status
    modes = MODES if backend == "tensorflow" else MODES[:3]
    if args.smoke:  # one mode, with max_predictions: it runs, in seconds
        args.layers, args.width, args.batch, args.length, args.steps = 1, 32, 4, 32, 2
        modes = ("masked_lm",) if backend == "tensorflow" else ("dict",)
    gpus = accelerators()
    print(f"Backend {backend}; GPUs: {gpus or 'none (CPU only)'}")
    ids = in_model_cost.batch(args.batch, args.length)
    tokens = ids.size
    plain = in_model_cost.compiled(
        in_model_cost.encoder_model(args.layers, args.width), "auto")
    without = median_step(plain, ids, args.steps)
    print(f"\nEncoder {args.layers} x {args.width}, batch {args.batch} x {args.length}; "
          f"step without masking {without * 1e3:.1f} ms\n")
    print("| backend | output_mode | fit's jit_compile | step with masking | masking's share | "
          "layer alone, jitted |")
    print("|---|---|---|---|---|---|")
    for mode in modes:
        predictions = max(1, args.length * 3 // 20) if mode in ("masked_lm", "dict") else None
        layer = in_model_cost.masking_layer(mode, max_predictions=predictions)
        model = in_model_cost.compiled(
            in_model_cost.encoder_model(args.layers, args.width, layer, mode), "auto")
        with_masking = median_step(model, ids, args.steps)
        alone = in_model_cost.masking_alone(layer, jit_compile=True)
        in_model_cost.layer_seconds(alone, ids)
        seconds = statistics.median(
            in_model_cost.layer_seconds(alone, ids) for _ in range(args.steps))
        print(f"| {backend} | {mode} | {model.jit_compile} | {with_masking * 1e3:.1f} ms | "
              f"{(with_masking - without) / with_masking:+.1%} | "
              f"{tokens / seconds / 1e6:.1f} M tokens/s |")


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"\n({time.perf_counter() - start:.0f} s)")
    sys.exit(code)
