"""`DenoiserMixture`: UL2's mixture of denoisers, one drawn per example."""

from collections.abc import Sequence

import keras
import numpy as np
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import validation
from keras_dynmask.kernels import noise_spans
from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import seeds
from keras_dynmask.kernels import span_noise
from keras_dynmask.span_corruption import RowPlan
from keras_dynmask.span_corruption import SpanCorruption

# The modes and the order of `mode_token_ids`: UL2's [NLU], [NLG], [S2S].
MODES = ("R", "X", "S")

# UL2's seven denoisers: (mode, mean noise span length, noise density).
UL2_DENOISERS = (
    ("R", 3.0, 0.15),
    ("R", 8.0, 0.15),
    ("X", 3.0, 0.5),
    ("X", 8.0, 0.5),
    ("X", 64.0, 0.15),
    ("X", 64.0, 0.5),
    ("S", None, None),
)


@keras.saving.register_keras_serializable(package="keras_dynmask")
class DenoiserMixture(SpanCorruption):
    """UL2's mixture of denoisers: each example drawn one, its mode token first.

    Every example independently draws one of `denoisers` with the given
    `rates`. An R- or X-denoiser `(mode, mean_noise_span_length,
    noise_density)` is `SpanCorruption` with those settings; the S-denoiser
    is prefix-LM: a split point `s` uniform in `[1, n)` (`n` the real
    tokens), inputs the first `s` tokens, targets the rest, no sentinels.
    The inputs then start with the mode token of the denoiser's mode: R
    (UL2's `[NLU]`), X (`[NLG]`) or S (`[S2S]`). The whole batch is one pass
    of the span kernel with a noise density and mean span length per row.

    Sentinels, eos, padding, lengths, seeds, the `training` default and the
    errors are those of `SpanCorruption`; so is where it runs: on JAX and
    PyTorch tensors (inside a model, under jit) it needs `inputs_length` and
    `targets_length`, and draws each row's denoiser there too, feeding the
    rows' settings to the one span kernel (`kernels.span_noise`). Not training, every row passes
    with no noise and no mode token, and `"denoiser"` is -1. A row of
    padding only is left as `SpanCorruption` leaves it (nothing but the eos,
    if any): it gets no mode token and `"denoiser"` -1.

    A mixture has no single `noise_density` or `mean_noise_span_length`
    (both `None`; `current_noise_density()` and `MaskRateLogger` refuse it);
    `lengths_for(inputs_length)` sizes rows for every denoiser it may draw,
    counting the mode token.

    Args:
        vocabulary_size: int >= 2.
        denoisers: `(mode, mean_noise_span_length, noise_density)` triples,
            `mode` one of `"R"`, `"X"`, `"S"` (the last two `None` for
            `"S"`). Default: UL2's R (3, 0.15), (8, 0.15); X (3, 0.5),
            (8, 0.5), (64, 0.15), (64, 0.5); and S.
        rates: `None` (all equally likely) or a list of one non-negative
            weight per denoiser (normalised; their sum must be positive).
        mode_token_ids: `None` or the three ids put first for R, X and S.
            `None`: the three ids just below the sentinels.
        sentinel_ids, num_sentinels, eos_id, pad_token_id, inputs_length,
            targets_length, seed: as for `SpanCorruption`.
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        inputs, training, seed: as for `SpanCorruption`.

    Returns:
        A dict `{"inputs", "targets", "denoiser"}`: inputs and targets as for
        `SpanCorruption`, and `"denoiser"`, int32 `[B]` (`[]` for `[T]`
        input), the index in `denoisers` each example drew (-1 for none).

    Example:

    >>> import tensorflow as tf
    >>> ul2 = DenoiserMixture(vocabulary_size=200, num_sentinels=20)
    >>> ul2.mode_token_ids
    [179, 178, 177]
    >>> out = ul2(tf.range(10, 42)[None, :], seed=tf.constant([3, 4]))
    >>> sorted(out)
    ['denoiser', 'inputs', 'targets']
    >>> mode = ul2.denoisers[int(out["denoiser"][0])][0]
    >>> int(out["inputs"][0, 0]) == ul2.mode_token_ids["RXS".index(mode)]
    True
    """

    OUTPUT_KEYS = ("inputs", "targets", "denoiser")

    def __init__(
        self,
        vocabulary_size: int,
        denoisers: "Sequence[dict]" = UL2_DENOISERS,
        rates: "Sequence[float] | None" = None,
        mode_token_ids: "dict[str, int] | None" = None,
        sentinel_ids: "Sequence[int] | None" = None,
        num_sentinels: int = 100,
        eos_id: int | None = None,
        pad_token_id: int | None = 0,
        inputs_length: int | None = None,
        targets_length: int | None = None,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        # Skips SpanCorruption's own arguments: a mixture has no single
        # noise density.
        super(SpanCorruption, self).__init__(**kwargs)
        self.vocabulary_size = validation.as_int("vocabulary_size", vocabulary_size, 2)
        self.denoisers = self._checked_denoisers(denoisers)
        self._given_rates = None
        if rates is None:
            weights = [1.0] * len(self.denoisers)
        else:
            if isinstance(rates, np.ndarray):
                rates = rates.tolist() if rates.ndim == 1 else rates
            if not isinstance(rates, (list, tuple)):
                raise ValueError(
                    "`rates` must be None or a list of non-negative weights, one per "
                    f"denoiser ({len(self.denoisers)} denoisers). Received: rates={rates!r}"
                )
            weights = [
                validation.as_float(f"rates[{i}]", r, 0) for i, r in enumerate(rates)
            ]
            self._given_rates = list(weights)
            if len(weights) != len(self.denoisers) or sum(weights) <= 0:
                raise ValueError(
                    "`rates` must hold one non-negative weight per denoiser, with a "
                    f"positive sum ({len(self.denoisers)} denoisers). Received: rates={rates!r}"
                )
        self.rates = [w / sum(weights) for w in weights]
        # A mixture has no single density or span length (see `denoisers`)
        # and no schedule.
        self._noise_density = None
        self.mean_noise_span_length = None
        self._noise_steps = None
        self._configure_common(
            sentinel_ids, num_sentinels, eos_id, pad_token_id, inputs_length,
            targets_length, seed,
        )
        self._given_mode_token_ids = None
        if mode_token_ids is None:
            below = min(self.sentinel_ids)
            if below < 3:
                raise ValueError(
                    "Three ids below the sentinels are needed for the default "
                    "mode tokens: pass `mode_token_ids`. Received: "
                    f"vocabulary_size={vocabulary_size!r}, lowest sentinel {below}"
                )
            self.mode_token_ids = [below - 1, below - 2, below - 3]
        else:
            self.mode_token_ids = validation.as_int_list(
                "mode_token_ids", mode_token_ids, 0, self.vocabulary_size
            )
            self._given_mode_token_ids = list(self.mode_token_ids)
            if len(self.mode_token_ids) != 3:
                raise ValueError(
                    "`mode_token_ids` must be three ids, for R ([NLU]), X ([NLG]) "
                    f"and S ([S2S]). Received: mode_token_ids={mode_token_ids!r}"
                )
            if set(self.mode_token_ids) & set(self.sentinel_ids):
                raise ValueError(
                    "`mode_token_ids` must not be sentinel ids (sentinels: "
                    f"{self._sentinel_text()}). Received: mode_token_ids={mode_token_ids!r}"
                )
            if len(set(self.mode_token_ids)) != 3:
                raise ValueError(
                    "`mode_token_ids` must be three distinct ids (the mode must be "
                    f"readable from the inputs). Received: mode_token_ids={mode_token_ids!r}"
                )
        # A mode token read as padding or as the end would corrupt every row of its mode.
        for name, value in (("pad_token_id", self.pad_token_id), ("eos_id", self.eos_id)):
            if value is not None and value in self.mode_token_ids:
                raise ValueError(
                    f"`{name}` must not be a mode token (mode_token_ids: "
                    f"{self.mode_token_ids}, for R, X and S). Received: {name}={value!r}"
                )

    def get_config(self):
        config = super(SpanCorruption, self).get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "denoisers": [list(d) for d in self.denoisers],
                "rates": self._given_rates,
                "mode_token_ids": self._given_mode_token_ids,
            }
        )
        config.update(self._common_config())
        return config

    @staticmethod
    def _checked_denoisers(denoisers):
        if isinstance(denoisers, (str, bytes, dict)) or not isinstance(
            denoisers, (list, tuple)
        ) or not denoisers:
            raise ValueError(
                "`denoisers` must be a non-empty list of (mode, mean_noise_span_length, "
                f"noise_density) triples. Received: denoisers={denoisers!r}"
            )
        checked = []
        for i, denoiser in enumerate(denoisers):
            if not isinstance(denoiser, (list, tuple)) or len(denoiser) != 3:
                raise ValueError(
                    "Each denoiser must be a (mode, mean_noise_span_length, "
                    f"noise_density) triple. Received: denoisers[{i}]={denoiser!r}"
                )
            mode = validation.as_choice(f"denoisers[{i}][0]", denoiser[0], MODES)
            if mode == "S":
                if denoiser[1] is not None or denoiser[2] is not None:
                    raise ValueError(
                        "The S-denoiser (a prefix-LM split) has no span length or "
                        f"density: write it ('S', None, None). Received: denoisers[{i}]={denoiser!r}"
                    )
                checked.append(("S", None, None))
                continue
            mean = validation.as_float(f"denoisers[{i}][1]", denoiser[1], 1)
            density = validation.as_float(
                f"denoisers[{i}][2]", denoiser[2], 0, 1, low_open=True, high_open=True
            )
            checked.append((mode, mean, density))
        return checked

    def current_noise_density(self):
        """Refused: each example draws its own density (see `denoisers`)."""
        raise ValueError(
            "A DenoiserMixture has no single noise density: each example draws "
            "one of its `denoisers` (mode, mean_noise_span_length, noise_density) "
            f"with `rates`. Received: denoisers={self.denoisers!r}"
        )

    def lengths_for(self, inputs_length: int) -> "noise_spans.SpanLengths":
        """Raw and target lengths for a wanted `inputs_length`, whatever denoiser a row draws.

        Counts the mode token and the eos. An R- or X-row of `n` tokens
        holds in its inputs the non-noise tokens and one sentinel per span;
        an S-row at most `n - 1` tokens (the prefix), its targets the rest.
        Denoisers with rate 0 are never drawn and not counted.

        Args:
            inputs_length: int >= 1, the wanted length of the inputs.

        Returns:
            A `SpanLengths(tokens_length, targets_length)`: the most real
            tokens a row may hold for its inputs to fit with any denoiser
            (cut rows of raw text to this), and the longest targets such a
            row may get (an S-row's targets are long: up to `n - 1` tokens).
        """
        inputs_length = validation.as_int("inputs_length", inputs_length, 1)
        eos = int(self.eos_id is not None)
        drawn = [d for d, rate in zip(self.denoisers, self.rates) if rate > 0]
        spans = [(density, mean) for mode, mean, density in drawn if mode != "S"]
        tokens = [
            noise_spans.lengths_for_inputs_length(
                inputs_length, density, mean, extra_inputs_tokens=1 + eos,
                max_spans=self.num_sentinels, extra_targets_tokens=eos,
            ).tokens_length
            for density, mean in spans
        ]
        with_prefix_lm = len(spans) < len(drawn)
        if with_prefix_lm:
            # Inputs: mode token, a prefix of n - 1 tokens (all of a row of
            # one), eos.
            fits = inputs_length - eos
            tokens.append(fits if fits >= 2 else 0)
        tokens_length = min(tokens)
        targets = [
            noise_spans.corrupted_lengths(
                tokens_length, density, mean, 1 + eos, eos, self.num_sentinels
            )[1]
            for density, mean in spans
        ]
        if with_prefix_lm:
            targets.append(max(tokens_length - 1, 0) + eos)
        return noise_spans.SpanLengths(tokens_length, max(max(targets), 1))

    # The per-row plan SpanCorruption's kernels follow.

    def _count_bounds(self, width):
        # A prefix-LM row is one span each side: it cuts nothing, so it
        # needs no gaps (`random_cuts` takes longer rows with one part).
        settings = [(d, m) for mode, m, d in self.denoisers if mode != "S"] or [(0.5, 1.0)]
        return noise_spans.count_bounds(width, settings, self.num_sentinels)

    def _extra_specs(self):
        return (("denoiser", "int32"),)

    def _unchanged_extras(self, batch_size, ops=None):
        if ops is None:
            return {"denoiser": tf.fill([batch_size], -1)}
        return {"denoiser": ops.zeros((batch_size,), "int32") - 1}

    def _choice_bounds(self):
        """float32 cumulative rates: a row's uniform draw `u` picks the
        number of bounds `<= u`. Trailing denoisers of rate 0 get bounds
        above 1 (never drawn, whatever float32 rounding says)."""
        cumulative = np.cumsum(self.rates)[:-1]
        never = np.cumsum(self.rates[::-1])[::-1][1:] == 0  # all later rates 0
        return np.where(never, 2.0, cumulative).astype(np.float32)

    def _backend_row_plan(self, ops, lengths, width, seed, step):
        """The `RowPlan` on JAX and PyTorch: each row's denoiser, drawn by
        its rate, and its counts from per-row settings fed to the one span
        kernel (`kernels.span_noise`), as `_row_plan` does on TensorFlow."""
        batch_size = ops.shape(lengths)[0]
        draws = ops.uniform((2, batch_size), seed)
        bounds = ops.convert(self._choice_bounds())
        passed = ops.cast(draws[0][:, None] >= bounds[None, :], "int32")
        denoiser = ops.cast(ops.sum(passed, axis=1), "int32")
        # Per-row settings; S rows take placeholders, then their own counts.
        is_s = np.array([mode == "S" for mode, _, _ in self.denoisers])
        densities = np.array([0.5 if s else d for (_, _, d), s in zip(self.denoisers, is_s)], np.float32)
        means = np.array([1.0 if s else m for (_, m, _), s in zip(self.denoisers, is_s)], np.float32)
        num_noise, num_spans = span_noise.span_counts(
            ops, lengths, width, ops.take(ops.convert(densities), denoiser),
            ops.take(ops.convert(means), denoiser), self.num_sentinels,
        )
        prefix_lm = ops.take(ops.convert(is_s), denoiser)
        if is_s.any():
            split_noise = span_noise.prefix_split_noise(ops, lengths, draws[1])
            num_noise = ops.where(prefix_lm, split_noise, num_noise)
            num_spans = ops.where(prefix_lm, ops.minimum(split_noise, 1), num_spans)
        modes = np.array([MODES.index(mode) for mode, _, _ in self.denoisers])
        first_ids = ops.take(ops.convert(np.asarray(self.mode_token_ids, np.int32)[modes]), denoiser)
        # A row of padding only: no denoiser (-1), no mode token.
        has_tokens = lengths > 0
        return RowPlan(
            num_noise,
            num_spans,
            ops.logical_not(prefix_lm),
            ops.where(has_tokens, first_ids, -1),
            {"denoiser": ops.where(has_tokens, denoiser, -1)},
        )

    def _row_plan(self, lengths, seed):
        choice_seed, split_seed = seeds.split_seed(seed, 2)
        batch_size = tf.shape(lengths)[0]
        # One 32-bit draw per row picks the denoiser by cumulative rate.
        bounds = np.round(np.cumsum(self.rates)[:-1] * 2.0**32)
        draws = tf.cast(random_bits.uniform_bits([batch_size], choice_seed, 32), tf.int64)
        passed = tf.cast(draws[:, None] >= tf.constant(bounds, tf.int64)[None, :], tf.int32)
        denoiser = tf.reduce_sum(passed, axis=1)
        # Per-row settings; S rows take placeholders, then their own counts.
        is_s = [mode == "S" for mode, _, _ in self.denoisers]
        densities = tf.gather([0.5 if s else d for (_, _, d), s in zip(self.denoisers, is_s)], denoiser)
        means = tf.gather([1.0 if s else m for (_, m, _), s in zip(self.denoisers, is_s)], denoiser)
        num_noise, num_spans = noise_spans.span_counts(
            lengths, densities, means, self.num_sentinels
        )
        prefix_lm = tf.gather(is_s, denoiser)
        if any(is_s):
            split_noise = noise_spans.prefix_split_noise(lengths, split_seed)
            num_noise = tf.where(prefix_lm, split_noise, num_noise)
            num_spans = tf.where(prefix_lm, tf.minimum(split_noise, 1), num_spans)
        modes = [MODES.index(mode) for mode, _, _ in self.denoisers]
        first_ids = tf.gather(tf.gather(self.mode_token_ids, modes), denoiser)
        # A row of padding only is left as SpanCorruption leaves it: no
        # denoiser (-1), no mode token (a negative first id).
        has_tokens = lengths > 0
        return RowPlan(
            num_noise,
            num_spans,
            tf.logical_not(prefix_lm),
            tf.where(has_tokens, first_ids, -1),
            {"denoiser": tf.where(has_tokens, denoiser, -1)},
        )
