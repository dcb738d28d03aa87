"""Static vs dynamic masking, and masking strategies, measured at small scale.

Trains the same small BERT-style encoder (`pretrain_mlm.py`'s
`build_encoder`) on the same packed sequences, in the same order, with the
same optimizer, step budget and seeds, under different masking schemes, in
two families of arms:

- `long` (RoBERTa's Table 1, pushed further): a small subset for many
  epochs, so that each of BERT's ten static copies is seen 10+ times:
  `static-dupe1` (one mask per sequence, drawn once), `static-dupe10` (ten
  copies drawn once, copy `epoch % 10` in epoch `epoch`) and `dynamic`
  (`DynamicMLMMasking` draws a new mask for every batch of every epoch);
- `strategy`: more data, fewer epochs, all dynamic: `dynamic` (token-level,
  15 %), `dynamic-word` (whole words), `dynamic-span` (SpanBERT spans of
  whole words) and `dynamic-schedule` (token-level, the rate decaying
  linearly from 30 % to 15 % over training).

Static masks are really static: materialised once, before training, into
arrays (`examples/static_masking.py`) and read back. Every evaluated epoch,
every run of every arm is scored on one fixed 15 % token-level masking of
the validation split, the same for all arms and seeds; the strategy arms
are also scored, at the end, on a fixed masking of their own kind.

Writes to `--output` (default `docs/static_vs_dynamic/`, or
`results/static_vs_dynamic_quick/` with `--quick`): `results.md` (a table
per family, mean ± std over seeds), `long_run.png`, `strategies.png` and
`history.json` (every number of every run). `docs/static_vs_dynamic/README.md`
reads them.

Run: `python examples/static_vs_dynamic.py [--quick] [--family long|strategy]
[--seeds N] [--text-files GLOB | --tfds NAME] [--output DIR]`.
"""

import os
import sys
import time

import keras
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import example_common  # noqa: E402  (flags, corpus, tokenizer, errors)
import pretrain_mlm  # noqa: E402  (the encoder and its compile recipe)
import static_vs_dynamic_arms as arms  # noqa: E402  (data, masks, evaluation)
import static_vs_dynamic_report as report  # noqa: E402  (tables, plots, history)

DEFAULT_OUTPUT = os.path.join(
    example_common.REPOSITORY_ROOT, "docs", "static_vs_dynamic"
)
QUICK_OUTPUT = os.path.join(
    example_common.REPOSITORY_ROOT, "results", "static_vs_dynamic_quick"
)
# Which training sequences are used: fixed, the same for every run.
SUBSET_SEED = 0
# Flags that must be >= 1.
POSITIVE_FLAGS = tuple(
    "seeds dupe_factor long_epochs long_sequences evaluate_every strategy_epochs "
    "strategy_sequences validation_sequences vocabulary_size batch_size hidden_dim "
    "num_layers num_heads intermediate_dim".split()
)
QUICK = dict(
    seeds=2,
    long_epochs=6,
    long_sequences=64,
    evaluate_every=2,
    strategy_epochs=2,
    strategy_sequences=128,
    validation_sequences=64,
    max_passages=3000,
    vocabulary_size=400,
    sequence_length=32,
    batch_size=16,
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
        help="a tiny run (about a minute) of every arm: "
        + ", ".join(f"{k}={v}" for k, v in QUICK.items()),
    )
    parser.add_argument("--family", choices=("long", "strategy", "all"), default="all")
    parser.add_argument("--output", default=None, help=f"default {DEFAULT_OUTPUT}")
    parser.add_argument("--seeds", type=int, default=3, help="runs per arm")
    parser.add_argument("--seed", type=int, default=1, help="the first run seed")
    parser.add_argument("--dupe-factor", type=int, default=10)
    parser.add_argument("--long-epochs", type=int, default=120)
    parser.add_argument(
        "--long-sequences",
        type=int,
        default=256,
        help="training sequences, long family",
    )
    parser.add_argument(
        "--evaluate-every",
        type=int,
        default=4,
        help="epochs between evaluations (long)",
    )
    parser.add_argument("--strategy-epochs", type=int, default=8)
    parser.add_argument(
        "--strategy-sequences",
        type=int,
        default=2048,
        help="training sequences, strategy",
    )
    parser.add_argument(
        "--validation-sequences",
        type=int,
        default=512,
        help="cap on held-out sequences",
    )
    example_common.add_max_passages_flag(parser)
    example_common.add_model_flags(
        parser,
        vocabulary_size=1000,
        sequence_length=64,
        hidden_dim=128,
        intermediate_dim=256,
        dropout=0.0,
        learning_rate=5e-3,
    )
    parser.add_argument("--mask-rate", type=float, default=0.15)
    parser.add_argument(
        "--schedule-start",
        type=float,
        default=0.3,
        help="dynamic-schedule's first rate",
    )
    parser.add_argument(
        "--verbose", type=int, default=0, choices=(0, 1, 2), help="Keras' fit verbosity"
    )
    args = parser.parse_args(argv)
    if args.quick:
        defaults = {action.dest: action.default for action in parser._actions}
        for name, value in QUICK.items():
            if getattr(args, name) == defaults[name]:
                setattr(args, name, value)
    if args.output is None:
        args.output = QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT
    example_common.require_at_least_one(parser, args, POSITIVE_FLAGS)
    example_common.require_sequence_length(parser, args)
    if args.long_epochs % args.evaluate_every:
        parser.error(
            f"--long-epochs ({args.long_epochs}) must be a multiple of "
            f"--evaluate-every ({args.evaluate_every})"
        )
    for flag in ("long_sequences", "strategy_sequences"):
        if args.batch_size > getattr(args, flag):
            parser.error(
                f"--batch-size ({args.batch_size}) must be at most "
                f"--{flag.replace('_', '-')} ({getattr(args, flag)})"
            )
    return args


def families(args):
    """The families the flags ask for: arms, epochs, sequences, evaluation."""
    long = {
        "arms": ("static-dupe1", f"static-dupe{args.dupe_factor}", "dynamic"),
        "epochs": args.long_epochs,
        "sequences": args.long_sequences,
        "evaluate_every": args.evaluate_every,
    }
    strategy = {
        "arms": arms.STRATEGY_ARMS,
        "epochs": args.strategy_epochs,
        "sequences": args.strategy_sequences,
        "evaluate_every": 1,
    }
    chosen = {"long": long, "strategy": strategy}
    return chosen if args.family == "all" else {args.family: chosen[args.family]}


# One run.


def new_encoder(tokenizer, args):
    """An uncompiled encoder of the flags' size, initialised by the global seed."""
    return pretrain_mlm.build_encoder(
        tokenizer.vocabulary_size,
        args.sequence_length,
        pad_token_id=tokenizer.pad_id,
        **example_common.model_size(args),
    )


def initial_weights(tokenizer, seeds, args):
    """The encoder's initial variables for each run seed, drawn up front.

    `keras.utils.set_random_seed` (which seeds the initialisation) also
    clears TensorFlow's kernel cache, so every compiled function is built
    again on its next call: called between runs, it would cost each run the
    first step's graph set-up (seconds here). Drawing every seed's weights
    before the first run keeps that cost to the first run of a family.

    Args:
        tokenizer: the `WordPieceTokenizer`.
        seeds: the run seeds.
        args: the flags (model size).

    Returns:
        A dict: seed -> list of arrays, one per `model.variables` (weights
        and dropout's random state), as a model built under that seed has.
    """
    weights = {}
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        weights[seed] = [variable.numpy() for variable in new_encoder(tokenizer, args).variables]
    return weights


def fresh_encoder(tokenizer, weights, total_steps, args, reuse=None):
    """The encoder with a run's initial weights, compiled, with a fresh optimizer.

    Building and compiling a model, then tracing its train step, costs more
    than a short run trains; so the family's first compiled model is
    reused: every variable (weights and dropout's random state) is set to
    the run's initial values, and the optimizer's state (step count,
    moments) is zeroed, which is exactly the state a new model starts in.
    (`total_steps`, baked into the learning-rate schedule, is the same for
    every run of a family.)

    Args:
        tokenizer: the `WordPieceTokenizer`.
        weights: one seed's entry of `initial_weights`.
        total_steps: int, steps of the learning-rate schedule.
        args: the flags (model size, learning rate).
        reuse: `None`, or a model this function returned before.

    Returns:
        A compiled `keras.Model`.
    """
    model = reuse
    if model is None:
        model = new_encoder(tokenizer, args)
        pretrain_mlm.compile_encoder(model, args.learning_rate, total_steps)
    else:
        for variable in model.optimizer.variables:
            variable.assign(tf.zeros_like(variable))
    for variable, value in zip(model.variables, weights, strict=True):
        variable.assign(value)
    return model


def train_one(arm, family, seed, rows, evaluation, tokenizer, args, weights, model=None):
    """Trains one fresh encoder under one arm's masking.

    Args:
        arm: str, the arm's name.
        family: dict from `families`: `"epochs"`, `"evaluate_every"`.
        seed: int, the run seed (data order and masks).
        rows: int32 array `[N, T]`, the family's training sequences.
        evaluation: dict with `"token"` (the fixed 15 % token-level held-out
            dataset) and, per arm with a masking of another kind, its own.
        tokenizer: the `WordPieceTokenizer`.
        args: the flags.
        weights: the run seed's initial variables (`initial_weights`).
        model: `None`, or the family's model from an earlier run.

    Returns:
        A dict: lists over evaluated epochs `"epochs"`, `"loss"` (training
        loss over the epochs since the last evaluation), `"val_loss"`,
        `"val_accuracy"`; `"own_loss"`, `"own_accuracy"` (the arm's own
        masking at the end), `"seconds"` and `"model"` (not saved to JSON).
    """
    steps = len(rows) // args.batch_size
    total_steps = steps * family["epochs"]
    masker = arms.arm_masker(
        arm, tokenizer, args.mask_rate, total_steps, args.schedule_start
    )
    train = arms.training_batches(
        arm, rows, masker, args.batch_size, family["epochs"], seed
    ).prefetch(tf.data.AUTOTUNE)
    model = fresh_encoder(tokenizer, weights, total_steps, args, reuse=model)
    every = family["evaluate_every"]
    # One Keras epoch = `every` passes over the data, then one evaluation.
    history, seconds = example_common.timed_fit(
        model,
        train,
        evaluation["token"],
        family["epochs"] // every,
        args.verbose,
        steps_per_epoch=steps * every,
    )
    own = example_common.evaluate(model, evaluation.get(arm, evaluation["token"]))
    return {
        "epochs": [every * (i + 1) for i in range(family["epochs"] // every)],
        "loss": [float(v) for v in history.history["loss"]],
        "val_loss": [float(v) for v in history.history["val_loss"]],
        "val_accuracy": [float(v) for v in history.history["val_accuracy"]],
        "own_loss": own["loss"],
        "own_accuracy": own["accuracy"],
        "seconds": seconds,
        "model": model,
    }


# The study.


def prepare(args):
    """Corpus, tokenizer, each family's training rows and the held-out rows."""
    corpus = example_common.load_corpus_from_flags(args, args.sequence_length // 2)
    print(corpus)
    tokenizer = example_common.learn_tokenizer(
        corpus, args.vocabulary_size, args.sequence_length, verbose=False
    )
    train = arms.packed_rows(corpus.dataset("train"), tokenizer, args.sequence_length)
    validation = arms.subset(
        arms.packed_rows(corpus.dataset("validation"), tokenizer, args.sequence_length),
        args.validation_sequences,
        SUBSET_SEED,
    )
    chosen = families(args)
    for name, family in chosen.items():
        family["rows"] = arms.subset(train, family["sequences"], SUBSET_SEED)
        if len(family["rows"]) < args.batch_size:
            raise ValueError(
                f"Too little training text: {len(train)} sequences of "
                f"{args.sequence_length} tokens, fewer than one batch of "
                f"{args.batch_size}"
            )
        steps = len(family["rows"]) // args.batch_size
        family["steps"] = steps * family["epochs"]
        family["description"] = (
            f"{len(family['rows'])} training sequences, {family['epochs']} epochs x "
            f"{steps} steps of {args.batch_size}, held-out scored every "
            f"{family['evaluate_every']} epoch(s); {args.seeds} seeds per arm."
        )
    return tokenizer, chosen, validation


def run(args):
    """Loads the data, trains every arm of every family and seed, writes results.

    Args:
        args: the `parse_args()` namespace.

    Returns:
        A dict: `"families"` (family -> arms, epochs, runs, ...),
        `"unavailable"` (arm -> why it could not run), `"table"` and the
        paths written: `"table_path"`, `"plot_paths"`, `"history_path"`.
    """
    started = time.perf_counter()
    tokenizer, chosen, validation_rows = prepare(args)
    all_arms = [arm for family in chosen.values() for arm in family["arms"]]
    unavailable = {}
    for arm in dict.fromkeys(all_arms):
        try:
            arms.arm_masker(arm, tokenizer, args.mask_rate, 2, args.schedule_start)
        except arms.ArmUnavailable as error:
            unavailable[arm] = str(error)
            print(f"Skipping {error}", flush=True)
    evaluation = arms.held_out(
        tokenizer, validation_rows, args, [a for a in all_arms if a not in unavailable]
    )
    setup = (
        f"WordPiece vocabulary {tokenizer.vocabulary_size}; {len(validation_rows)} "
        f"held-out sequences of {args.sequence_length} tokens; encoder width "
        f"{args.hidden_dim}, {args.num_layers} layers, feed-forward "
        f"{args.intermediate_dim}, dropout {args.dropout}; AdamW, peak learning "
        f"rate {args.learning_rate}, 10 % warm-up then cosine decay; seeds "
        f"{args.seed}-{args.seed + args.seeds - 1}."
    )
    print(f"{setup} Setup took {time.perf_counter() - started:.0f}s", flush=True)
    for name, family in chosen.items():
        family["arms"] = [a for a in family["arms"] if a not in unavailable]
        family["runs"] = {arm: [] for arm in family["arms"]}
        family["epochs_evaluated"] = list(
            range(
                family["evaluate_every"], family["epochs"] + 1, family["evaluate_every"]
            )
        )
        print(f"{name}: {family['description']}", flush=True)

    os.makedirs(args.output, exist_ok=True)
    history_path = os.path.join(args.output, "history.json")
    total_steps = sum(f["steps"] * len(f["arms"]) * args.seeds for f in chosen.values())
    total_runs = sum(len(f["arms"]) * args.seeds for f in chosen.values())
    weights = initial_weights(tokenizer, range(args.seed, args.seed + args.seeds), args)
    done_steps, done_runs, training_started = 0, 0, time.perf_counter()
    for name, family in chosen.items():
        model = None
        # Seed-major order: an interrupted study still holds balanced arms.
        for seed in range(args.seed, args.seed + args.seeds):
            for arm in family["arms"]:
                done_runs += 1
                label = f"[run {done_runs}/{total_runs}] {name} {arm}, seed {seed}"
                print(f"{label} ({family['steps']} steps)", flush=True)
                result = train_one(
                    arm,
                    family,
                    seed,
                    family["rows"],
                    evaluation,
                    tokenizer,
                    args,
                    weights[seed],
                    model,
                )
                model = result.pop("model")
                result["seed"] = seed
                family["runs"][arm].append(result)
                done_steps += family["steps"]
                spent = time.perf_counter() - training_started
                eta = spent / done_steps * (total_steps - done_steps)
                print(
                    f"{label}: held-out loss {result['val_loss'][-1]:.3f}, accuracy "
                    f"{result['val_accuracy'][-1]:.3f} (own masking "
                    f"{result['own_loss']:.3f}, {result['own_accuracy']:.3f}); "
                    f"{result['seconds']:.0f}s; {time.perf_counter() - started:.0f}s "
                    f"elapsed, ETA {eta:.0f}s",
                    flush=True,
                )
                report.write_history(history_path, args, chosen, unavailable)

    table = report.results_markdown(chosen, unavailable, setup)
    table_path = os.path.join(args.output, "results.md")
    with open(table_path, "w") as handle:
        handle.write(table)
    files = {"long": "long_run.png", "strategy": "strategies.png"}
    plot_paths = [
        report.plot_family(
            name,
            {"runs": family["runs"], "epochs": family["epochs_evaluated"]},
            os.path.join(args.output, files[name]),
        )
        for name, family in chosen.items()
    ]
    print(table)
    print(
        f"Wrote {table_path}, {', '.join(plot_paths)} and {history_path} in "
        f"{time.perf_counter() - started:.0f}s"
    )
    return {
        "families": chosen,
        "unavailable": unavailable,
        "table": table,
        "table_path": table_path,
        "plot_paths": plot_paths,
        "history_path": history_path,
    }


def main(argv=None):
    """Runs the study `argv` asks for; 0, 1 if an arm could not run, 2 on bad input."""
    args = parse_args(argv)
    try:
        result = run(args)
    except example_common.BAD_INPUT_ERRORS as error:
        return example_common.report_bad_input(error)
    if result["unavailable"]:
        print(f"Not run: {', '.join(result['unavailable'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
