"""Tables and plots of `static_vs_dynamic.py`: mean ± std over seeds.

The study trains every arm of a family with several seeds and records, per
run, the training loss and the held-out loss and accuracy at each evaluated
epoch (`"epochs"`), and for the strategy arms also the held-out loss and
accuracy on the arm's own masking of the validation split (`"own_loss"`,
`"own_accuracy"`). This module turns those records into one Markdown table
and one figure per question:

- `long`: do ten static copies keep up with dynamic masking when the
  epochs far exceed the dupe factor (held-out loss per epoch);
- `strategy`: what whole-word, span and a 30 % -> 15 % rate schedule change
  against token-level dynamic masking at the same budget.
"""

import json

import numpy as np

# (column title, function of one run's record, number format); every
# cell is the mean ± std of the function over seeds.
LONG_COLUMNS = (
    ("final held-out loss", lambda r: r["val_loss"][-1], "{:.3f}"),
    ("best held-out loss", lambda r: min(r["val_loss"]), "{:.3f}"),
    ("epoch of best", lambda r: r["epochs"][int(np.argmin(r["val_loss"]))], "{:.0f}"),
    ("final held-out acc.", lambda r: r["val_accuracy"][-1], "{:.3f}"),
    ("best held-out acc.", lambda r: max(r["val_accuracy"]), "{:.3f}"),
    ("final training loss", lambda r: r["loss"][-1], "{:.3f}"),
    ("wall time per run (s)", lambda r: r["seconds"], "{:.0f}"),
)
STRATEGY_COLUMNS = (
    ("final held-out loss", lambda r: r["val_loss"][-1], "{:.3f}"),
    ("final held-out acc.", lambda r: r["val_accuracy"][-1], "{:.3f}"),
    ("best held-out acc.", lambda r: max(r["val_accuracy"]), "{:.3f}"),
    ("own-masking loss", lambda r: r["own_loss"], "{:.3f}"),
    ("own-masking acc.", lambda r: r["own_accuracy"], "{:.3f}"),
    ("final training loss", lambda r: r["loss"][-1], "{:.3f}"),
    ("wall time per run (s)", lambda r: r["seconds"], "{:.0f}"),
)
COLUMNS = {"long": LONG_COLUMNS, "strategy": STRATEGY_COLUMNS}
TITLES = {
    "long": "Long run: static copies against dynamic masking, epochs >> dupe factor",
    "strategy": "Strategies at the same budget: token, whole-word, span, rate schedule",
}


def mean_std(values):
    """`(mean, std)` of a list of numbers, as Python floats (std over seeds)."""
    return float(np.mean(values)), float(np.std(values))


def markdown_table(family, runs, unavailable=None):
    """One family's results, one row per arm, `mean ± std` over seeds.

    Args:
        family: `"long"` or `"strategy"`.
        runs: dict arm -> list of run records (one per seed).
        unavailable: dict arm -> reason, for arms that could not run; they
            get a row saying so.

    Returns:
        A str: a Markdown table.

    Example:

    >>> run = {"val_loss": [3.0, 2.0], "val_accuracy": [0.1, 0.2],
    ...        "loss": [2.5, 1.5], "epochs": [1, 2], "seconds": 10.0}
    >>> print(markdown_table("long", {"dynamic": [run, run]}).splitlines()[2])
    | dynamic | 2.000 ± 0.000 | 2.000 ± 0.000 | 2 ± 0 | 0.200 ± 0.000 | 0.200 ± 0.000 | 1.500 ± 0.000 | 10 ± 0 |
    """
    columns = COLUMNS[family]
    seeds = max((len(results) for results in runs.values()), default=0)
    lines = [
        f"| arm ({seeds} seeds) | " + " | ".join(c[0] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for arm, results in runs.items():
        cells = []
        for _, value, number in columns:
            mean, std = mean_std([value(r) for r in results])
            cells.append(f"{number.format(mean)} ± {number.format(std)}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    for arm, reason in (unavailable or {}).items():
        lines.append(f"| {arm} | not run: {reason} |" + " |" * (len(columns) - 1))
    return "\n".join(lines) + "\n"


def results_markdown(families, unavailable, setup):
    """The whole `results.md`: a heading, the setup line and a table a family.

    Args:
        families: dict family -> dict with `"runs"` (arm -> records) and
            `"description"` (one line: data, epochs, steps).
        unavailable: dict arm -> reason.
        setup: str, the line describing corpus, tokenizer and model.

    Returns:
        A str.
    """
    parts = ["# Static vs dynamic masking: results\n", setup + "\n"]
    for family, record in families.items():
        missing = {a: r for a, r in unavailable.items() if a in record["arms"]}
        parts.append(f"## {TITLES[family]}\n")
        parts.append(record["description"] + "\n")
        parts.append(markdown_table(family, record["runs"], missing))
    return "\n".join(parts)


def _curves(axis, runs, key, epochs):
    """Draws each arm's mean curve of `key` with a ±std band over seeds."""
    for arm, results in runs.items():
        if not results:
            continue
        curves = np.array([r[key] for r in results])
        mean, std = curves.mean(axis=0), curves.std(axis=0)
        (line,) = axis.plot(epochs, mean, label=arm)
        axis.fill_between(
            epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2
        )


def plot_family(family, record, path):
    """The family's figure: held-out curves left, training or accuracy right.

    `long`: held-out loss (fixed token-level masking) and training loss (on
    each arm's own masks) per epoch. `strategy`: held-out loss and accuracy
    (fixed token-level masking) per epoch. Mean line, ±std band.

    Args:
        family: `"long"` or `"strategy"`.
        record: dict with `"runs"` (arm -> records) and `"epochs"` (the
            evaluated epochs, 1-based).
        path: where to write the PNG.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, epochs = record["runs"], np.array(record["epochs"])
    seeds = max((len(results) for results in runs.values()), default=0)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    _curves(left, runs, "val_loss", epochs)
    left.set_title("held-out MLM loss (one fixed 15 % token masking)")
    left.set_ylabel(f"cross-entropy per masked token (mean ± std, {seeds} seeds)")
    if family == "long":
        _curves(right, runs, "loss", epochs)
        right.set_title("training MLM loss (on each arm's own masks)")
        right.set_ylabel("cross-entropy per masked token")
    else:
        _curves(right, runs, "val_accuracy", epochs)
        right.set_title("held-out accuracy at the masked positions")
        right.set_ylabel(f"accuracy (mean ± std, {seeds} seeds)")
    for axis in (left, right):
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if axis.get_lines():
            axis.legend()
    figure.suptitle(TITLES[family], fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_history(path, args, chosen, unavailable):
    """Writes every number so far to `history.json` (after every run)."""
    kept = ("arms", "epochs", "sequences", "evaluate_every", "steps", "description")
    record = {
        "args": vars(args),
        "unavailable": unavailable,
        "families": {
            name: {
                **{key: family[key] for key in kept},
                "epochs_evaluated": family["epochs_evaluated"],
                "runs": family["runs"],
            }
            for name, family in chosen.items()
        },
    }
    with open(path, "w") as handle:
        json.dump(record, handle, indent=1)
