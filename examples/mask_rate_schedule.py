"""Scheduled vs realised masking rate over a short run, as a plot.

Masks `--steps` batches through `keras_dynmask.data.mask_dataset` with
`mask_rate=PolynomialDecay(0.3, steps, 0.15)` (the 30 % -> 15 % linear
decay of Ankner et al., 2023), measures the share of eligible tokens each batch
actually selected, and plots it against the schedule, for Bernoulli and
exact selection and for whole-word masking.

Run: `python examples/mask_rate_schedule.py [--steps 200] [--output docs/mask_rate_schedule.png]`
(8.5 s on a shared 2-core machine, 2026-12-06). Synthetic ids: nothing is downloaded.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dynmask import DynamicMLMMasking  # noqa: E402
from keras_dynmask.data import mask_dataset  # noqa: E402

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCABULARY_SIZE = 8000


def realised_rates(layer, steps, batch_size, sequence_length, seed=0):
    """The selected share of each of `steps` batches masked by `layer`."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCABULARY_SIZE, (steps * batch_size, sequence_length))
    batches = tf.data.Dataset.from_tensor_slices(ids.astype("int32")).batch(batch_size)
    return np.array(
        [float(tf.reduce_mean(weights)) for _, _, weights in mask_dataset(batches, layer, seed=seed)]
    )


def main(argv=None):
    """Measures the rates and writes the plot; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--output", default=os.path.join(REPOSITORY_ROOT, "docs", "mask_rate_schedule.png"))
    args = parser.parse_args(argv)
    if args.steps < 2 or args.batch_size < 1 or args.sequence_length < 2:
        parser.error("--steps must be >= 2, --batch-size >= 1, --sequence-length >= 2")
    schedule = keras.optimizers.schedules.PolynomialDecay(0.3, args.steps - 1, 0.15)
    word_starts = np.random.default_rng(1).random(VOCABULARY_SIZE) < 0.7
    arms = {
        "token, bernoulli": dict(),
        "token, exact": dict(selection="exact"),
        "whole word, exact": dict(selection="exact", granularity="word", word_starts=word_starts),
    }
    scheduled = np.array([float(schedule(step)) for step in range(args.steps)])
    measured = {}
    for name, options in arms.items():
        layer = DynamicMLMMasking(VOCABULARY_SIZE, 4, mask_rate=schedule, output_mode="fit", **options)
        measured[name] = realised_rates(layer, args.steps, args.batch_size, args.sequence_length)
        error = np.abs(measured[name] - scheduled)
        print(f"{name:>18}: realised - scheduled: mean {np.mean(measured[name] - scheduled):+.4f}, "
              f"max |.| {error.max():.4f} over {args.steps} batches")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4))
    for name, rates in measured.items():
        axis.plot(rates, ".", markersize=3, alpha=0.6, label=f"realised: {name}")
    axis.plot(scheduled, "k-", linewidth=1.5, label="scheduled: PolynomialDecay(0.3 -> 0.15)")
    axis.set_xlabel("batch (schedule step = epoch * N + index, via mask_dataset)")
    axis.set_ylabel("share of tokens selected")
    axis.set_title(f"Scheduled vs realised mask rate ({args.batch_size} x {args.sequence_length} a batch)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    figure.savefig(args.output, dpi=110)
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
