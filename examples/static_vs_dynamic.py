"""Static vs dynamic masking, measured: RoBERTa's Table 1 at small scale.

Trains the same small BERT-style encoder (from `pretrain_mlm.py`) on the same
packed sequences, in the same order, with the same optimizer, step budget and
seeds, under three masking schemes:

- `static-dupe1`: BERT's static masking with the masks drawn once (dupe
  factor 1): every epoch shows every sequence with the same mask;
- `static-dupe10`: BERT's recipe, ten differently masked copies drawn once
  and cycled across epochs (copy `epoch % 10` in epoch `epoch`);
- `dynamic`: `DynamicMLMMasking` draws a new mask for every batch of every
  epoch (`keras_dynmask.data.mask_dataset`).

Static masks are really static: they are materialised once, before
training, into arrays (`examples/static_masking.py`), and training reads
them back. After every epoch each run is evaluated on one fixed masking of
the validation split, identical for all arms and seeds.

Writes to `--output` (default `results/static_vs_dynamic/`):
`results.md` (a Markdown table: final and best held-out loss and accuracy,
final training loss and wall time per arm, mean +- std over seeds),
`static_vs_dynamic.png` (held-out loss per epoch with a seed band, and
training loss per epoch) and `history.json` (every number of every run).

Run: `python examples/static_vs_dynamic.py [--quick] [--seeds N]
[--epochs N] [--text-files GLOB | --tfds NAME] [--output DIR]`.
The defaults took 18 minutes on 2 CPU cores; `--quick` about 1.
"""

import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_dynmask.data import mask_dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from static_masking import epoch_order  # noqa: E402
from static_masking import materialize_static_masks  # noqa: E402
from static_masking import static_masked_dataset  # noqa: E402
import example_common  # noqa: E402  (flags, corpus, tokenizer, errors)
import pretrain_mlm  # noqa: E402  (the encoder, packing and masker it uses)

DEFAULT_OUTPUT = os.path.join(
    example_common.REPOSITORY_ROOT, "results", "static_vs_dynamic"
)
# One masking of the validation split, for every arm and every seed.
EVALUATION_SEED = 20190726
# Which training sequences are used: fixed, the same for every run.
SUBSET_SEED = 0
QUICK = dict(
    epochs=4,
    seeds=2,
    train_sequences=256,
    validation_sequences=64,
    max_passages=3000,
    vocabulary_size=800,
    sequence_length=32,
    batch_size=32,
    hidden_dim=32,
    num_layers=1,
    intermediate_dim=64,
)


def parse_args(argv=None):
    """Command-line flags; the defaults are the measured study.

    Args:
        argv: list of str, or `None` for `sys.argv[1:]`.

    Returns:
        An `argparse.Namespace` (with `--quick` applied).
    """
    parser = example_common.new_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run (under 2 minutes) that exercises everything: "
        + ", ".join(f"{k}={v}" for k, v in QUICK.items()),
    )
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--seeds", type=int, default=3, help="runs per arm")
    parser.add_argument("--seed", type=int, default=1, help="the first run seed")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dupe-factor", type=int, default=10)
    parser.add_argument(
        "--train-sequences",
        type=int,
        default=1536,
        help="packed training sequences used (a fixed random subset)",
    )
    parser.add_argument(
        "--validation-sequences",
        type=int,
        default=512,
        help="cap on packed held-out sequences",
    )
    example_common.add_max_passages_flag(parser)
    example_common.add_model_flags(
        parser,
        vocabulary_size=2000,
        sequence_length=64,
        hidden_dim=64,
        intermediate_dim=256,
        dropout=0.1,
        learning_rate=1e-3,
    )
    parser.add_argument("--mask-rate", type=float, default=0.15)
    example_common.add_verbose_flag(parser)
    args = parser.parse_args(argv)
    if args.quick:
        defaults = {action.dest: action.default for action in parser._actions}
        for name, value in QUICK.items():
            if getattr(args, name) == defaults[name]:
                setattr(args, name, value)
    example_common.require_at_least_one(
        parser,
        args,
        (
            "seeds",
            "epochs",
            "dupe_factor",
            "train_sequences",
            "validation_sequences",
            "vocabulary_size",
            "batch_size",
            "hidden_dim",
            "num_layers",
            "num_heads",
            "intermediate_dim",
        ),
    )
    example_common.require_sequence_length(parser, args)
    if args.batch_size > args.train_sequences:
        parser.error(
            f"--batch-size ({args.batch_size}) must be at most "
            f"--train-sequences ({args.train_sequences})"
        )
    return args


# Data.


def packed_rows(texts, tokenizer, sequence_length):
    """All packed `[CLS] ... [SEP]` rows of a split, in corpus order.

    Args:
        texts: a `tf.data.Dataset` of scalar strings.
        tokenizer: a `WordPieceTokenizer`.
        sequence_length: int, ids per row.

    Returns:
        An int32 NumPy array `[N, sequence_length]`.
    """
    batches, _ = pretrain_mlm.packed_dataset(
        texts, tokenizer, sequence_length, batch_size=1024, drop_remainder=False
    )
    return np.concatenate([batch.numpy() for batch in batches])


def subset(rows, count, seed):
    """`count` rows drawn without replacement (all of them if fewer), in order.

    Args:
        rows: array `[N, T]`.
        count: int >= 1.
        seed: int.

    Returns:
        An array `[min(N, count), T]`.
    """
    if len(rows) <= count:
        return rows
    chosen = np.random.default_rng(seed).choice(len(rows), size=count, replace=False)
    return rows[np.sort(chosen)]


def dynamic_masked_dataset(token_ids, masker, batch_size, epochs, seed):
    """The dynamic arm's batches: the static arms' order, masked afresh.

    Args:
        token_ids: int array `[N, T]`.
        masker: a `DynamicMLMMasking` in `"fit"` mode.
        batch_size: int.
        epochs: int.
        seed: int: seeds the order (as for the static arms) and the masks.

    Returns:
        A `tf.data.Dataset` of `(x, y, sample_weight)` batches, all epochs
        back to back, each batch masked with its own key
        `(seed, pass, batch index)`.
    """
    rows = tf.constant(token_ids)
    batches = epoch_order(len(token_ids), batch_size, epochs, seed).map(
        lambda epoch, indices: tf.gather(rows, indices)
    )
    return mask_dataset(batches, masker, seed=seed)


def arms(dupe_factor):
    """The arms' names and their dupe factors (`None` for dynamic)."""
    return {
        "static-dupe1": 1,
        f"static-dupe{dupe_factor}": dupe_factor,
        "dynamic": None,
    }


# One run.


def fresh_encoder(tokenizer, seed, total_steps, args, reuse=None):
    """The encoder as `seed` initialises it, compiled, with a fresh optimizer.

    Building and compiling a model, then tracing its train step, costs more
    than a short run trains; so the first run's compiled model is reused:
    every variable (weights and dropout's random state) is set to a model
    freshly built under `seed`, and the optimizer's state (step count,
    moments) is zeroed, which is exactly the state a new model starts in.

    Args:
        tokenizer: the `WordPieceTokenizer`.
        seed: int, seeds the initialisation and dropout.
        total_steps: int, steps of the learning-rate schedule.
        args: the flags (model size, learning rate).
        reuse: `None`, or a model this function returned before.

    Returns:
        A compiled `keras.Model`.
    """
    keras.utils.set_random_seed(seed)
    model = pretrain_mlm.build_encoder(
        tokenizer.vocabulary_size,
        args.sequence_length,
        pad_token_id=tokenizer.pad_id,
        **example_common.model_size(args),
    )
    if reuse is None:
        pretrain_mlm.compile_encoder(model, args.learning_rate, total_steps)
        return model
    for target, source in zip(reuse.variables, model.variables, strict=True):
        target.assign(source)
    for variable in reuse.optimizer.variables:
        variable.assign(tf.zeros_like(variable))
    return reuse


def train_one(arm, dupe, seed, train_rows, validation, tokenizer, args, model=None):
    """Trains one fresh encoder under one masking scheme.

    Args:
        arm: str, the arm's name (for the progress line).
        dupe: int dupe factor for static masking, `None` for dynamic.
        seed: int, the run seed (initialisation, dropout, order, masks).
        train_rows: int32 array `[N, T]`.
        validation: the fixed held-out `(x, y, sample_weight)` dataset.
        tokenizer: the `WordPieceTokenizer`.
        args: the flags.
        model: `None`, or the model of an earlier run to reuse (see
            `fresh_encoder`).

    Returns:
        A dict: per-epoch lists `"loss"`, `"val_loss"`, `"val_accuracy"`,
        `"seconds"` (training wall time, evaluations included) and
        `"model"` (the trained encoder, not saved to JSON).
    """
    keras.utils.set_random_seed(seed)
    masker = pretrain_mlm.make_masker(tokenizer, args.mask_rate, "fit")
    steps = len(train_rows) // args.batch_size
    if dupe is None:
        train = dynamic_masked_dataset(
            train_rows, masker, args.batch_size, args.epochs, seed
        )
    else:
        static = materialize_static_masks(
            train_rows, masker, dupe_factor=dupe, seed=seed
        )
        train = static_masked_dataset(static, args.batch_size, args.epochs, seed)
    train = train.prefetch(tf.data.AUTOTUNE)
    model = fresh_encoder(tokenizer, seed, steps * args.epochs, args, reuse=model)
    history, seconds = example_common.timed_fit(
        model, train, validation, args.epochs, args.verbose, steps_per_epoch=steps
    )
    return {
        "loss": [float(v) for v in history.history["loss"]],
        "val_loss": [float(v) for v in history.history["val_loss"]],
        "val_accuracy": [float(v) for v in history.history["val_accuracy"]],
        "seconds": seconds,
        "model": model,
    }


# Summaries.


def summarize(runs):
    """Mean and std over seeds of each arm's headline numbers.

    Args:
        runs: dict arm -> list of `train_one` results (one per seed).

    Returns:
        dict arm -> dict metric -> `(mean, std)`; metrics are
        `final_val_loss`, `best_val_loss`, `final_val_accuracy`,
        `best_val_accuracy`, `final_train_loss`, `seconds`.
    """
    summary = {}
    for arm, results in runs.items():
        values = {
            "final_val_loss": [r["val_loss"][-1] for r in results],
            "best_val_loss": [min(r["val_loss"]) for r in results],
            "final_val_accuracy": [r["val_accuracy"][-1] for r in results],
            "best_val_accuracy": [max(r["val_accuracy"]) for r in results],
            "final_train_loss": [r["loss"][-1] for r in results],
            "seconds": [r["seconds"] for r in results],
        }
        summary[arm] = {
            name: (float(np.mean(v)), float(np.std(v))) for name, v in values.items()
        }
    return summary


def markdown_table(summary, seeds):
    """The results table, one row per arm, `mean ± std` over `seeds` runs.

    Args:
        summary: the output of `summarize`.
        seeds: int, runs per arm.

    Returns:
        A str: a Markdown table.
    """
    columns = [
        ("final held-out loss", "final_val_loss", "{:.3f}"),
        ("best held-out loss", "best_val_loss", "{:.3f}"),
        ("final held-out acc.", "final_val_accuracy", "{:.3f}"),
        ("best held-out acc.", "best_val_accuracy", "{:.3f}"),
        ("final training loss", "final_train_loss", "{:.3f}"),
        ("wall time per run (s)", "seconds", "{:.0f}"),
    ]
    lines = [
        "| arm (" + f"{seeds} seeds) | " + " | ".join(c[0] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for arm, metrics in summary.items():
        cells = []
        for _, key, fmt in columns:
            mean, std = metrics[key]
            cells.append(f"{fmt.format(mean)} ± {fmt.format(std)}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(runs, path):
    """Held-out and training loss per epoch, mean line and ±std band per arm.

    Args:
        runs: dict arm -> list of `train_one` results.
        path: where to write the PNG.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (held_out, training) = plt.subplots(1, 2, figsize=(11, 4.2))
    for arm, results in runs.items():
        for axis, key in ((held_out, "val_loss"), (training, "loss")):
            curves = np.array([r[key] for r in results])
            mean, std = curves.mean(axis=0), curves.std(axis=0)
            epochs = np.arange(1, curves.shape[1] + 1)
            (line,) = axis.plot(epochs, mean, label=arm)
            axis.fill_between(
                epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2
            )
    seeds = len(next(iter(runs.values())))
    held_out.set_title("held-out MLM loss (fixed evaluation masking)")
    training.set_title("training MLM loss (on each arm's own masks)")
    for axis in (held_out, training):
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"cross-entropy per masked token (mean ± std, {seeds} seeds)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# The study.


def run(args):
    """Loads the data, trains every arm for every seed, writes the results.

    Args:
        args: the `parse_args()` namespace.

    Returns:
        A dict: `"runs"` (arm -> per-seed results), `"summary"`, `"table"`,
        and the paths written: `"table_path"`, `"plot_path"`,
        `"history_path"`.
    """
    started = time.perf_counter()
    corpus = example_common.load_corpus_from_flags(args, args.sequence_length // 2)
    print(corpus)
    tokenizer = example_common.learn_tokenizer(
        corpus, args.vocabulary_size, args.sequence_length, verbose=False
    )
    train_rows = subset(
        packed_rows(corpus.dataset("train"), tokenizer, args.sequence_length),
        args.train_sequences,
        SUBSET_SEED,
    )
    validation_rows = subset(
        packed_rows(corpus.dataset("validation"), tokenizer, args.sequence_length),
        args.validation_sequences,
        SUBSET_SEED,
    )
    if len(train_rows) < args.batch_size:
        raise ValueError(
            f"Too little training text: {len(train_rows)} sequences of "
            f"{args.sequence_length} tokens, fewer than one batch of "
            f"{args.batch_size}"
        )
    evaluation_masker = pretrain_mlm.make_masker(tokenizer, args.mask_rate, "fit")
    validation = pretrain_mlm.fixed_masking(
        tf.data.Dataset.from_tensor_slices(validation_rows).batch(args.batch_size),
        evaluation_masker,
        EVALUATION_SEED,
    )
    steps = len(train_rows) // args.batch_size
    print(
        f"WordPiece vocabulary {tokenizer.vocabulary_size}; "
        f"{len(train_rows)} training and {len(validation_rows)} held-out sequences "
        f"of {args.sequence_length} tokens; {args.epochs} epochs x {steps} steps "
        f"of {args.batch_size}; {args.seeds} seeds per arm; setup took "
        f"{time.perf_counter() - started:.0f}s"
    )

    os.makedirs(args.output, exist_ok=True)
    history_path = os.path.join(args.output, "history.json")
    scheme = arms(args.dupe_factor)
    runs = {arm: [] for arm in scheme}
    total = len(scheme) * args.seeds
    done = 0
    model = None
    # Seed-major order: an interrupted study still holds balanced arms.
    for seed in range(args.seed, args.seed + args.seeds):
        for arm, dupe in scheme.items():
            done += 1
            print(f"[run {done}/{total}] {arm}, seed {seed}", flush=True)
            result = train_one(
                arm, dupe, seed, train_rows, validation, tokenizer, args, model
            )
            model = result.pop("model")
            result["seed"] = seed
            runs[arm].append(result)
            print(
                f"[run {done}/{total}] {arm}, seed {seed}: held-out loss "
                f"{result['val_loss'][-1]:.3f}, accuracy "
                f"{result['val_accuracy'][-1]:.3f}, {result['seconds']:.0f}s; "
                f"{time.perf_counter() - started:.0f}s elapsed",
                flush=True,
            )
            with open(history_path, "w") as handle:
                json.dump({"args": vars(args), "runs": runs}, handle, indent=1)

    summary = summarize(runs)
    table = markdown_table(summary, args.seeds)
    table_path = os.path.join(args.output, "results.md")
    with open(table_path, "w") as handle:
        handle.write(table)
    plot_path = plot(runs, os.path.join(args.output, "static_vs_dynamic.png"))
    print(table)
    print(
        f"Wrote {table_path}, {plot_path} and {history_path} in "
        f"{time.perf_counter() - started:.0f}s"
    )
    return {
        "runs": runs,
        "summary": summary,
        "table": table,
        "table_path": table_path,
        "plot_path": plot_path,
        "history_path": history_path,
    }


def main(argv=None):
    """Runs the study `argv` asks for; returns 0, or 2 on bad input."""
    args = parse_args(argv)
    try:
        run(args)
    except example_common.BAD_INPUT_ERRORS as error:
        return example_common.report_bad_input(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
