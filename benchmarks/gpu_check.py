"""GPU check: `fit` with Keras's default `jit_compile="auto"` in every mode.

On a machine with a GPU, Keras's `"auto"` compiles the train step with XLA
when every layer reports `supports_jit`, as `DynamicMLMMasking` does. For
each output mode this builds the small encoder of `in_model_cost.py` with
the masking layer at its input, runs `fit` steps with the default
`jit_compile`, and prints what Keras chose, the masking's share of a step
(step with masking minus step without, over step with) and the layer's
tokens/s on its own under XLA. On a CPU-only machine it runs the same
steps (there `"auto"` leaves XLA off) and says so.

    .venv/bin/python benchmarks/gpu_check.py [--smoke]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import in_model_cost  # noqa: E402

MODES = ("ids", "fit", "dict", "masked_lm")


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
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps")
    args = parser.parse_args()
    modes = MODES
    if args.smoke:  # one mode, with max_predictions: it runs, in seconds
        args.layers, args.width, args.batch, args.length, args.steps = 1, 32, 4, 32, 2
        modes = ("masked_lm",)
    gpus = tf.config.list_physical_devices("GPU")
    print(f"GPUs: {[g.name for g in gpus] or 'none (CPU only: auto leaves XLA off)'}")
    ids = in_model_cost.batch(args.batch, args.length)
    tokens = ids.size
    plain = in_model_cost.compiled(
        in_model_cost.encoder_model(args.layers, args.width), "auto")
    without = median_step(plain, ids, args.steps)
    print(f"\nEncoder {args.layers} x {args.width}, batch {args.batch} x {args.length}; "
          f"step without masking {without * 1e3:.1f} ms\n")
    print("| output_mode | fit's jit_compile | step with masking | masking's share | "
          "layer alone under XLA |")
    print("|---|---|---|---|---|")
    for mode in modes:
        predictions = max(1, args.length * 3 // 20) if mode == "masked_lm" else None
        layer = in_model_cost.masking_layer(mode, max_predictions=predictions)
        model = in_model_cost.compiled(
            in_model_cost.encoder_model(args.layers, args.width, layer, mode), "auto")
        with_masking = median_step(model, ids, args.steps)
        alone = tf.function(lambda x, layer=layer: layer(x, training=True), jit_compile=True)
        in_model_cost.layer_seconds(alone, ids)
        seconds = statistics.median(
            in_model_cost.layer_seconds(alone, ids) for _ in range(args.steps))
        print(f"| {mode} | {model.jit_compile} | {with_masking * 1e3:.1f} ms | "
              f"{(with_masking - without) / with_masking:+.1%} | "
              f"{tokens / seconds / 1e6:.1f} M tokens/s |")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"\n({time.perf_counter() - start:.0f} s)")
