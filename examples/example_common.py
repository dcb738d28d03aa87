"""What the training examples share: flags, corpus, training loop, export.

`pretrain_mlm.py`, `train_causal_lm.py` and `static_vs_dynamic.py` take the
same corpus and model-size flags, load and tokenize the corpus the same
way, compile with the same optimizer recipe, and `pretrain_mlm.py` and
`train_causal_lm.py` export and exit the same way. Each script keeps its
own data pipeline, model and serving signatures; this module holds only
the parts that are the same in all of them.
"""

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quiet_start  # noqa: E402  (the examples' TensorFlow start-up)

tf = quiet_start.import_tensorflow()

import keras  # noqa: E402

from keras_dynmask.text import WordPieceTokenizer  # noqa: E402

from corpora import load_corpus  # noqa: E402  (the examples' corpora)

# The repository's root: the default output folders lie below it.
REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Errors of a bad corpus or bad flags: reported in one line, exit status 2.
BAD_INPUT_ERRORS = (ValueError, FileNotFoundError)
BAD_INPUT_EXIT_STATUS = 2


# Flags.


def new_parser(description):
    """An argument parser that shows defaults and takes the corpus flags.

    Args:
        description: str, the first line of `--help`.

    Returns:
        An `argparse.ArgumentParser` with the mutually exclusive
        `--text-files` and `--tfds` (neither: the standard library's
        docstrings).
    """
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text-files", help="glob of UTF-8 text files to train on")
    source.add_argument("--tfds", help="a tensorflow_datasets text data set name")
    return parser


def add_export_job_flags(parser, epochs, output):
    """Adds `--epochs`, `--seed`, `--output` and `--version`.

    The flags of a script that trains one model and exports it in TF
    Serving's layout, `OUTPUT/VERSION`.

    Args:
        parser: an `argparse.ArgumentParser`.
        epochs: int, the default `--epochs`.
        output: str, the default `--output`.
    """
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--output",
        default=output,
        help="model directory; the SavedModel goes to OUTPUT/VERSION",
    )
    parser.add_argument("--version", type=int, default=1)


def add_model_flags(
    parser,
    vocabulary_size=4000,
    sequence_length=128,
    batch_size=32,
    hidden_dim=128,
    num_layers=2,
    num_heads=4,
    intermediate_dim=512,
    dropout=0.0,
    learning_rate=2e-3,
):
    """Adds the vocabulary, sequence, batch, model-size and learning-rate flags.

    Args:
        parser: an `argparse.ArgumentParser`.
        vocabulary_size, sequence_length, batch_size, hidden_dim,
            num_layers, num_heads, intermediate_dim, dropout,
            learning_rate: the defaults of the flags of the same names.
    """
    parser.add_argument("--vocabulary-size", type=int, default=vocabulary_size)
    parser.add_argument("--sequence-length", type=int, default=sequence_length)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--hidden-dim", type=int, default=hidden_dim)
    parser.add_argument("--num-layers", type=int, default=num_layers)
    parser.add_argument("--num-heads", type=int, default=num_heads)
    parser.add_argument("--intermediate-dim", type=int, default=intermediate_dim)
    parser.add_argument("--dropout", type=float, default=dropout)
    parser.add_argument("--learning-rate", type=float, default=learning_rate)


def add_max_passages_flag(parser):
    """Adds `--max-passages` (default: the whole corpus).

    Args:
        parser: an `argparse.ArgumentParser`.
    """
    parser.add_argument(
        "--max-passages",
        type=int,
        default=None,
        help="use at most this many passages of the corpus",
    )


def add_steps_per_epoch_flag(parser):
    """Adds `--steps-per-epoch` (default: one pass over the data).

    Args:
        parser: an `argparse.ArgumentParser`.
    """
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="cap on training steps per epoch; None: one full pass",
    )


def add_verbose_flag(parser):
    """Adds `--verbose`, Keras' `fit` verbosity (0, 1 or 2).

    The default is `default_verbosity()`: a progress bar on a terminal, one
    line per epoch when the output goes to a file or a pipe.

    Args:
        parser: an `argparse.ArgumentParser`.
    """
    parser.add_argument(
        "--verbose",
        type=int,
        default=None,
        choices=(0, 1, 2),
        help="Keras: 0 silent, 1 progress bar, 2 one line per epoch "
        "(default: 1 on a terminal, else 2)",
    )


def default_verbosity(stream=None):
    """Keras' `fit` verbosity for output to `stream` (default: stdout).

    A progress bar (1) redraws itself many times a second; on a terminal
    that is one line, but written to a file or a pipe every redraw stays,
    hundreds of kilobytes for a run of minutes. There it is one line per
    epoch (2).

    Args:
        stream: a file object, or `None` for `sys.stdout`.

    Returns:
        1 or 2.
    """
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 1 if isatty is not None and isatty() else 2


def verbosity(args):
    """`--verbose` as given, else `default_verbosity()`."""
    return default_verbosity() if args.verbose is None else args.verbose


def add_training_job_flags(parser, epochs, output, sequence_length, **model_defaults):
    """Adds the flags of a script that trains one model and exports it.

    `add_export_job_flags`, `add_model_flags` (with the common defaults
    but `sequence_length` and `model_defaults`), `--max-passages`,
    `--steps-per-epoch` and `--verbose`; the script adds its own flags
    after these.

    Args:
        parser: an `argparse.ArgumentParser`, from `new_parser`.
        epochs: int, the default `--epochs`.
        output: str, the default `--output`.
        sequence_length: int, the default `--sequence-length`.
        **model_defaults: other defaults of `add_model_flags`, e.g.
            `batch_size=64`.
    """
    add_export_job_flags(parser, epochs, output)
    add_model_flags(parser, sequence_length=sequence_length, **model_defaults)
    add_max_passages_flag(parser)
    add_steps_per_epoch_flag(parser)
    add_verbose_flag(parser)


def parse_and_check(parser, argv, positive_flags):
    """Parses `argv`; exits through `parser.error` on a bad value.

    Args:
        parser: an `argparse.ArgumentParser` with the `add_model_flags`.
        argv: list of str, or `None` for `sys.argv[1:]`.
        positive_flags: attribute names of the flags that must be >= 1.

    Returns:
        The `argparse.Namespace`, with each of `positive_flags` >= 1 and
        `sequence_length` >= 8.
    """
    args = parser.parse_args(argv)
    require_at_least_one(parser, args, positive_flags)
    require_sequence_length(parser, args)
    return args


def require_at_least_one(parser, args, flags):
    """Exits through `parser.error` unless each named flag is >= 1.

    Args:
        parser: the `argparse.ArgumentParser` that parsed `args`.
        args: the parsed `argparse.Namespace`.
        flags: iterable of attribute names, e.g. `("epochs", "batch_size")`.
    """
    for flag in flags:
        value = getattr(args, flag)
        if value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")


def require_sequence_length(parser, args, minimum=8):
    """Exits through `parser.error` unless `--sequence-length` >= `minimum`.

    Args:
        parser: the `argparse.ArgumentParser` that parsed `args`.
        args: the parsed `argparse.Namespace`.
        minimum: int, the shortest sequence length allowed.
    """
    if args.sequence_length < minimum:
        parser.error(
            f"--sequence-length must be >= {minimum}, got {args.sequence_length}"
        )


def model_size(args):
    """The model-size flags as keyword arguments of the examples' builders.

    Args:
        args: a namespace with the flags of `add_model_flags`.

    Returns:
        A dict: `hidden_dim`, `num_layers`, `num_heads`,
        `intermediate_dim`, `dropout`.
    """
    return {
        "hidden_dim": args.hidden_dim,
        "num_layers": args.num_layers,
        "num_heads": args.num_heads,
        "intermediate_dim": args.intermediate_dim,
        "dropout": args.dropout,
    }


# Corpus and tokenizer.


def shuffle_passages(texts, shuffle_seed):
    """The passages in a new order on every pass, or as they are.

    Args:
        texts: a `tf.data.Dataset` of scalar strings, of known cardinality.
        shuffle_seed: `None` (keep the order) or int.

    Returns:
        A `tf.data.Dataset` of the same strings.
    """
    if shuffle_seed is None:
        return texts
    passages = int(texts.cardinality())
    return texts.shuffle(passages, seed=shuffle_seed, reshuffle_each_iteration=True)


def load_corpus_from_flags(args, max_words):
    """The corpus the flags name; raises before anything is written.

    Args:
        args: a namespace with `text_files`, `tfds` and `max_passages`.
        max_words: int, the longest passage in words.

    Returns:
        A `keras_dynmask.data.Corpus`.
    """
    return load_corpus(
        text_files=args.text_files,
        tfds=args.tfds,
        max_words=max_words,
        max_passages=args.max_passages,
    )


def learn_tokenizer(corpus, vocabulary_size, sequence_length=None, verbose=True):
    """A WordPiece tokenizer learned from the corpus's training split.

    Args:
        corpus: a `keras_dynmask.data.Corpus`.
        vocabulary_size: int, the vocabulary size wanted.
        sequence_length: `None` or int, the length the tokenizer pads and
            truncates its calls to.
        verbose: whether to print the vocabulary's size.

    Returns:
        A `WordPieceTokenizer`.
    """
    if verbose:
        print(
            f"Learning a WordPiece vocabulary of about {vocabulary_size:,} pieces "
            f"from {len(corpus.train):,} passages...",
            flush=True,
        )
    start = time.perf_counter()
    tokenizer = WordPieceTokenizer.learn(
        corpus.dataset("train"),
        vocabulary_size=vocabulary_size,
        sequence_length=sequence_length,
    )
    if verbose:
        print(
            f"WordPiece vocabulary: {tokenizer.vocabulary_size} tokens "
            f"({time.perf_counter() - start:.0f}s)",
            flush=True,
        )
    return tokenizer


# Training.


def compile_language_model(model, learning_rate, total_steps):
    """AdamW with warm-up and cosine decay; loss at the weighted tokens.

    A tenth of the steps warm the learning rate up from 0 to
    `learning_rate`; the rest decay it to a tenth. The loss is
    `reduction="mean_with_sample_weight"`: it divides by the summed sample
    weights (the masked, or the predicted, tokens; padding weighs 0), so it
    is the mean cross-entropy per token that counts.

    Args:
        model: a `keras.Model` returning logits.
        learning_rate: float, the peak learning rate.
        total_steps: int, training steps of the whole run.
    """
    warmup = max(1, total_steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total_steps - warmup),
        warmup_target=learning_rate,
        warmup_steps=warmup,
        alpha=0.1,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    build_optimizer(model)


def build_optimizer(model):
    """Creates the compiled optimizer's variables now, not in the first step.

    Without a distribution strategy Keras builds the optimizer while it
    traces the train step; a `tf.function` whose first trace creates
    variables is traced a second time, which costs seconds per run.

    Args:
        model: a built, compiled `keras.Model`.
    """
    model.optimizer.build(model.trainable_variables)


def capped_training_data(train, steps, steps_per_epoch=None):
    """Caps the batches of an epoch and prefetches them.

    Args:
        train: a `tf.data.Dataset` of training batches, one epoch.
        steps: int, the batches in one pass over it.
        steps_per_epoch: `None` or int, a cap on the batches per epoch.

    Returns:
        `(dataset, steps)`: the batches, with their count visible to Keras
        (progress bars with a total), and that count.
    """
    if steps_per_epoch:
        steps = min(steps, steps_per_epoch)
        train = train.take(steps)
    train = train.apply(tf.data.experimental.assert_cardinality(steps))
    return train.prefetch(tf.data.AUTOTUNE), steps


def timed_fit(model, train, validation, epochs, verbose, **fit_kwargs):
    """`model.fit` with held-out data, timed.

    Args:
        model: a compiled `keras.Model`.
        train: the training `tf.data.Dataset`.
        validation: the held-out `tf.data.Dataset`.
        epochs: int.
        verbose: int, Keras' verbosity.
        **fit_kwargs: more `fit` arguments, e.g. `steps_per_epoch`.

    Returns:
        `(history, seconds)`: the `keras.callbacks.History` and the wall
        time of the fit.
    """
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=epochs,
        validation_data=validation,
        verbose=verbose,
        **fit_kwargs,
    )
    return history, time.perf_counter() - start


def evaluate(model, dataset):
    """Held-out loss, accuracy and perplexity.

    Args:
        model: a model compiled by `compile_language_model`.
        dataset: `(x, y, sample_weight)` batches.

    Returns:
        A dict of floats: `"loss"`, `"accuracy"`, `"perplexity"`
        (`exp(loss)`, the loss capped at 50).
    """
    loss, accuracy = model.evaluate(dataset, verbose=0)
    return {
        "loss": float(loss),
        "accuracy": float(accuracy),
        "perplexity": float(math.exp(min(loss, 50.0))),
    }


# Export.

# Input signatures of the exported endpoints: a batch of texts, and
# optionally a seed (`[]` for fresh randomness, `[2]` to reproduce).
TEXT_SIGNATURE = [tf.TensorSpec([None], tf.string, name="text")]
TEXT_AND_SEED_SIGNATURE = [
    tf.TensorSpec([None], tf.string, name="text"),
    tf.TensorSpec([None], tf.int64, name="seed"),
]


def write_saved_model(archive, tokenizer, directory):
    """Writes an export archive to `directory`, complete or not at all.

    The SavedModel is written to a temporary folder beside `directory` and
    moved into place when complete, so `directory` never holds a partial
    export (TF Serving watches these folders); an earlier export there is
    replaced. The vocabulary is written to `assets.extra/vocab.txt` for
    clients that want to decode ids.

    Args:
        archive: a `keras.export.ExportArchive` with its endpoints added.
        tokenizer: the `WordPieceTokenizer` whose vocabulary goes along.
        directory: the version folder, e.g. `saved_models/mlm_encoder/1`.

    Returns:
        `directory`, made absolute.
    """
    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        model_dir = os.path.join(staging, "model")
        archive.write_out(model_dir, verbose=False)
        extra = os.path.join(model_dir, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        tokenizer.save_vocabulary(os.path.join(extra, "vocab.txt"))
        if os.path.exists(directory):
            shutil.rmtree(directory)
        os.replace(model_dir, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


# The command line.


def report_bad_input(error):
    """Prints `error: ...` to stderr.

    Args:
        error: the exception.

    Returns:
        `BAD_INPUT_EXIT_STATUS`, for `main` to return.
    """
    print(f"error: {error}", file=sys.stderr)
    return BAD_INPUT_EXIT_STATUS


def cpu_seconds():
    """CPU seconds (user + system) of this process and its finished children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class Stopwatch:
    """Wall and CPU seconds per phase of a job, for a summary at its end.

    CPU seconds count every thread of the process (TensorFlow's included)
    and the child processes it waited for, so on 2 cores a phase may take
    up to twice its wall time in CPU; far less means it waited, for the
    disk or for other processes on a busy machine.

    Args:
        started: `None` (now), or `(time.perf_counter(), cpu_seconds())`
            taken when the job began, e.g. before importing TensorFlow; the
            time before the first phase is reported as start-up.
    """

    def __init__(self, started=None):
        self.started, self.started_cpu = started or (time.perf_counter(), cpu_seconds())
        self.phases = {}

    @contextlib.contextmanager
    def phase(self, name, message=None):
        """Times the `with` block as phase `name` (added to earlier ones).

        Args:
            name: str, the phase's name in the summary.
            message: `None`, or a str printed when the phase begins.
        """
        if message:
            print(message, flush=True)
        wall, cpu = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            spent = self.phases.setdefault(name, [0.0, 0.0])
            spent[0] += time.perf_counter() - wall
            spent[1] += cpu_seconds() - cpu

    def total_wall(self):
        """Wall seconds since the job began."""
        return time.perf_counter() - self.started

    def wall_seconds(self):
        """Wall seconds per phase, a dict in the order the phases began."""
        return {name: spent[0] for name, spent in self.phases.items()}

    def summary(self, title="Where the time went"):
        """A table: each phase's wall and CPU seconds and share of the total.

        The rest of the total (start-up and imports before the first phase,
        anything between phases) is one more row.
        """
        total_wall = self.total_wall()
        total_cpu = cpu_seconds() - self.started_cpu
        rows = list(self.phases.items())
        rest = [
            total_wall - sum(w for w, _ in self.phases.values()),
            total_cpu - sum(c for _, c in self.phases.values()),
        ]
        rows.append(("start-up and the rest", rest))
        width = max(len(name) for name, _ in rows + [("total", None)])
        lines = [f"{title} (wall seconds, CPU seconds of all threads):"]
        for name, (wall, cpu) in rows:
            share = 100 * wall / total_wall if total_wall > 0 else 0.0
            lines.append(f"  {name:<{width}}  {wall:6.1f} s  {share:3.0f} %   CPU {cpu:6.1f} s")
        lines.append(f"  {'total':<{width}}  {total_wall:6.1f} s  100 %   CPU {total_cpu:6.1f} s")
        return "\n".join(lines)


def format_stages(seconds):
    """`"corpus 3s, train 95s"`: seconds per stage, in the order run.

    Args:
        seconds: dict stage name -> seconds.

    Returns:
        A str.
    """
    return ", ".join(f"{stage} {value:.0f}s" for stage, value in seconds.items())


def run_from_command_line(args, load, run, done_message="Done in"):
    """The `main` of a training script: load, run, print the time taken.

    The corpus is loaded first, so a bad corpus is reported (exit status
    2) before anything is written.

    Args:
        args: the parsed flags.
        load: function `args -> corpus`; raises one of `BAD_INPUT_ERRORS`
            on a bad corpus.
        run: function `(args, corpus) -> result`, the result a dict with
            `"seconds"` (stage name -> seconds), and optionally
            `"stopwatch"` (a `Stopwatch`, whose summary is printed instead).
        done_message: str, what the closing line starts with.

    Returns:
        The exit status: 0, or 2 on a bad corpus.
    """
    started = time.perf_counter()
    try:
        corpus = load(args)
    except BAD_INPUT_ERRORS as error:
        return report_bad_input(error)
    result = run(args, corpus)
    if "stopwatch" in result:
        print(f"{done_message} {result['stopwatch'].total_wall():.0f}s.")
        print(result["stopwatch"].summary())
    else:
        print(
            f"{done_message} {time.perf_counter() - started:.0f}s "
            f"({format_stages(result['seconds'])})"
        )
    return 0
