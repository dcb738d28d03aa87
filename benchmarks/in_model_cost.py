"""What `DynamicMLMMasking` costs inside a model: its share of a `fit` step.

One train step of a small Transformer encoder is timed with and without the
masking layer at its input (`model.add(DynamicMLMMasking(...))` style), with
XLA on and off, in one process; rounds are interleaved and the fastest
step of each kind kept (the least disturbed by other jobs on the machine).
The share is `(step with masking - step without) / step with masking`; the
layer's own time on the batch (`tf.function`, same XLA setting) over the
step without it is printed beside it, a steadier view of the same cost.
Prints a Markdown table. Runs on the active Keras backend
(`KERAS_BACKEND=jax` / `torch` / `tensorflow`); the jit settings are
Keras's: TensorFlow with XLA off and on, JAX jitted (its default), PyTorch
eager (its default). The layer alone is timed jitted the same way
(`tf.function`, `jax.jit`, eager), and its throughput printed in tokens/s.

    .venv/bin/python benchmarks/in_model_cost.py            # about 2 minutes on 2 CPU cores
    KERAS_BACKEND=jax .venv/bin/python benchmarks/in_model_cost.py
    .venv/bin/python benchmarks/in_model_cost.py --layers 4 --width 256 --batch 32 --length 512
    .venv/bin/python benchmarks/in_model_cost.py --smoke    # seconds: checks it runs
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dynmask import DynamicMLMMasking  # noqa: E402

VOCAB, MASK_ID = 30522, 103
SPECIALS = [0, 101, 102, 103]


def masking_layer(output_mode="ids", **kwargs):
    return DynamicMLMMasking(
        vocabulary_size=VOCAB, mask_token_id=MASK_ID, special_token_ids=SPECIALS,
        pad_token_id=0, output_mode=output_mode, **kwargs,
    )


def corrupted_ids(outputs, output_mode):
    """The corrupted ids among a masking layer's outputs."""
    if output_mode == "fit":
        return outputs[0]
    if output_mode in ("dict", "masked_lm"):
        outputs = outputs[0] if output_mode == "masked_lm" else outputs
        return outputs["token_ids"]
    return outputs


def encoder_model(layers, width, masking=None, output_mode="ids"):
    """ids -> [masking] -> embeddings -> `layers` Transformer blocks -> logits."""
    ids = keras.Input((None,), dtype="int32")
    x = ids
    if masking is not None:
        x = corrupted_ids(masking(ids), output_mode)
    hidden = keras.layers.Embedding(VOCAB, width)(x)
    for _ in range(layers):
        attended = keras.layers.MultiHeadAttention(4, width // 4)(hidden, hidden)
        hidden = keras.layers.LayerNormalization()(hidden + attended)
        dense = keras.layers.Dense(4 * width, activation="gelu")(hidden)
        hidden = keras.layers.LayerNormalization()(hidden + keras.layers.Dense(width)(dense))
    logits = keras.layers.Dense(VOCAB)(hidden)
    return keras.Model(ids, logits)


def compiled(model, jit_compile):
    model.compile(
        keras.optimizers.Adam(1e-4),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    # Its variables now: made in the first step, they would make
    # tf.function trace the step twice.
    model.optimizer.build(model.trainable_variables)
    return model


def batch(size, length, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, VOCAB, (size, length)).astype(np.int32)
    ids[:, 0], ids[:, -1] = 101, 102
    return ids


def step_seconds(model, ids):
    start = time.perf_counter()
    model.train_on_batch(ids, ids)
    return time.perf_counter() - start


def layer_seconds(layer_call, ids):
    start = time.perf_counter()
    keras.tree.map_structure(keras.ops.convert_to_numpy, layer_call(ids))
    return time.perf_counter() - start


def jit_settings(smoke):
    """The `jit_compile` values timed on the active backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        return (True,)
    if backend == "torch":
        return (False,)
    # The smoke run leaves XLA off: the same code as with it, minus XLA's
    # compile time (the layer's XLA path has tests of its own).
    return (False,) if smoke else (False, True)


def masking_alone(layer, jit_compile):
    """The layer on a batch, training, compiled as the backend's `fit` would."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return tf.function(lambda x: layer(x, training=True), jit_compile=jit_compile)
    if backend == "jax":
        import jax

        jitted = jax.jit(lambda x, seed: layer(x, training=True, seed=seed))
        counter = iter(range(2**31))
        return lambda x: jitted(x, np.array([next(counter), 7], np.int32))
    return lambda x: layer(keras.ops.convert_to_tensor(x), training=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one step")
    args = parser.parse_args()
    if args.smoke:
        args.layers, args.width, args.batch, args.length, args.steps, args.rounds = 1, 32, 4, 32, 1, 1
    ids = batch(args.batch, args.length)
    rows = []
    for jit_compile in jit_settings(args.smoke):
        keras.utils.set_random_seed(0)
        models = {
            "without": compiled(encoder_model(args.layers, args.width), jit_compile),
            "with": compiled(encoder_model(args.layers, args.width, masking_layer()), jit_compile),
        }
        layer = masking_layer()
        alone = masking_alone(layer, jit_compile)
        times = {"without": [], "with": [], "alone": []}
        for name, model in models.items():  # compile and warm up
            step_seconds(model, ids)
            step_seconds(model, ids)
        layer_seconds(alone, ids)
        for _ in range(args.rounds):
            for _ in range(args.steps):
                for name, model in models.items():
                    times[name].append(step_seconds(model, ids))
                times["alone"].append(layer_seconds(alone, ids))
        without, with_masking, by_itself = (min(times[k]) for k in ("without", "with", "alone"))
        rows.append((jit_compile, without, with_masking, by_itself))
    tokens = args.batch * args.length
    print(f"\nBackend {keras.backend.backend()}: encoder {args.layers} layers x width "
          f"{args.width}, batch {args.batch} x {args.length}, vocabulary {VOCAB}; fastest "
          f"of {args.rounds * args.steps} steps\n")
    print("| backend | jit_compile | step without masking | step with masking | masking's share "
          "(difference) | layer alone / step | layer alone, tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for jit_compile, without, with_masking, by_itself in rows:
        print(f"| {keras.backend.backend()} | {jit_compile} | {without * 1e3:.0f} ms | "
              f"{with_masking * 1e3:.0f} ms | {(with_masking - without) / with_masking:+.1%} | "
              f"{by_itself / without:.2%} | {tokens / by_itself / 1e6:.1f} M |")


if __name__ == "__main__":
    main()
