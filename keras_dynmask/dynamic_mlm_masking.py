"""`DynamicMLMMasking`: a fresh masked-LM corruption on every batch."""

from collections.abc import Sequence

import keras
import numpy as np
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import granularity_options
from keras_dynmask import rate_schedules
from keras_dynmask import validation
from keras_dynmask.kernels import corruption
from keras_dynmask.kernels import formatting
from keras_dynmask.kernels import op_set
from keras_dynmask.kernels import token_masking
from keras_dynmask.kernels import word_masking
from keras_dynmask.kernels import masked_lm_format
from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import seeds
from keras_dynmask.kernels import selection as selection_kernels
from keras_dynmask.masking_layer import MaskingLayer
from keras_dynmask.masking_layer import cast_float_ids_in_models
from keras_dynmask.masking_layer import map_values
from keras_dynmask.masking_layer import passed_through_specs
from keras_dynmask.masking_layer import split_token_ids

OUTPUT_MODES = ("ids", "fit", "dict", "masked_lm")
SELECTIONS = ("bernoulli", "exact")


@keras.saving.register_keras_serializable(package="keras_dynmask")
class DynamicMLMMasking(MaskingLayer):
    """Masks tokens for masked-LM training, drawing a new mask every call.

    Each eligible token is selected with probability `mask_rate` (with
    `selection="exact"`: `round(mask_rate * eligible)` per sequence; with
    `granularity="word"`/`"span"`: whole words, SpanBERT spans). A selected
    token becomes `mask_token_id` (`mask_token_rate`), a random id drawn
    uniformly from the non-special, non-padding, non-mask ids
    (`random_token_rate`), or keeps its id. Special tokens, padding and
    `mask_token_id` are never selected. It runs in `tf.data`
    (`ds.map(layer)`), in a model (masking, like `Dropout`, only when Keras
    trains) and in an exported SavedModel; called on its own it masks unless
    `training=False`. Under XLA (`jit_compile=True`) every mode keeps its
    statistics; XLA drops the id-range check, so there an id outside
    `[0, vocabulary_size)` is never selected, changed or counted eligible.
    Under XLA ragged ids are taken only by token-level Bernoulli selection
    without `max_predictions`; otherwise pad them first (a `ValueError`
    says so).

    Randomness: unseeded, every call, epoch, tf.data service worker and
    replica draws fresh masks (seeds from the operating system), also after
    `keras.utils.set_random_seed`. A call-time `seed` (int `[2]`) makes the
    output a pure function of `(inputs, seed)`. A constructor `seed` makes
    the sequence of masks reproducible when calls come in a fixed order;
    under a parallel `ds.map` use `keras_dynmask.data.mask_dataset(ds,
    layer)`, which keys each mask by the seed, epoch and element index.

    Args:
        vocabulary_size: int >= 2, ids lie in `[0, vocabulary_size)`.
        mask_token_id: int in `[0, vocabulary_size)`, the mask token.
        mask_rate: float in `(0, 1]`, chance each eligible token is selected;
            or a `keras.optimizers.schedules.LearningRateSchedule` mapping
            the step (batches masked before) to the rate, e.g.
            `PolynomialDecay(0.3, steps, 0.15)`; the layer then counts its
            masked batches (saved with the model), `mask_dataset` passes
            each element's `epoch * N + index`, and `current_mask_rate()`
            reads the rate.
        mask_token_rate: float in `[0, 1]`, share of selected tokens replaced
            by `mask_token_id`.
        random_token_rate: float in `[0, 1]`, share of selected tokens
            replaced by a random id; `mask_token_rate + random_token_rate`
            must be at most 1, the rest keep their id.
        special_token_ids: ids never selected and never drawn as random
            replacements.
        pad_token_id: int or `None`, the padding id (never selected).
        selection: `"bernoulli"` (independent draws) or `"exact"`
            (`round(mask_rate * eligible)` per sequence, at least 1 when any
            token is eligible).
        max_predictions: `None` or int >= 1, cap on selections per sequence
            (a uniformly random subset is kept). In `"dict"` mode it also
            adds keras-hub's `mask_positions`, `mask_ids`, `mask_weights`.
        output_mode: `"ids"`, `"fit"`, `"dict"` or `"masked_lm"` (see Returns).
        ignore_index: label value at unselected positions in `"dict"` mode.
        seed: `None` or int, seeds the layer's sequence of masks.
        granularity: `"token"`, `"word"` (whole words) or `"span"` (SpanBERT's
            spans of whole words); see `kernels.word_selection` for budgets.
        word_starts: `None` or `vocabulary_size` bools, True where an id begins
            a word (`keras_dynmask.word_starts`); a dict's `"word_ids"` wins.
            Saved with a model's assets (a `.keras` file carries it), not
            in `get_config`: a layer made from its config alone (`from_config`,
            `keras.models.clone_model`) has no table until given one again,
            `from_config({**config, "word_starts": table})`, and says so
            when called. Old configs holding the table still load.
        span_length_p, max_span_length: `"span"` lengths in words follow
            Geometric(`span_length_p`) restricted to `[1, max_span_length]`.
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        inputs: int32/int64 ids of shape `[T]` or `[B, T]`, a
            `tf.RaggedTensor` `[B, (T)]`, or a dict holding `"token_ids"`
            (its other entries pass through untouched).
        training: `False` masks nothing. `None` masks when the layer is
            called on its own, and inside a model only when Keras trains.
        seed: optional shape-`[2]` int tensor; the output is then a pure
            function of `(inputs, seed)`.
        step: optional int scalar, the schedule step of this call (with a
            scheduled `mask_rate`); without it the layer's own count is used
            and advanced.

    Returns:
        `"ids"`: the corrupted ids, same shape, dtype and kind as the input
        ids (or the input dict with `"token_ids"` replaced).
        `"fit"`: a tuple `(x, y, sample_weight)` for `model.fit`: `x` the
        corrupted ids (or dict), `y` the original ids, `sample_weight`
        float32, 1.0 at selected positions and 0.0 elsewhere.
        `"dict"`: a dict with `"token_ids"` (corrupted), `"labels"` (the
        original id at selected positions, `ignore_index` elsewhere) and
        `"mask"` (bool selection); with `max_predictions` also
        `"mask_positions"` (int32), `"mask_ids"` and `"mask_weights"`
        (float32) of width `max_predictions`: positions ascending, then
        padding with position 0, id 0, weight 0. Other entries of a dict
        input pass through.
        `"masked_lm"` (needs `max_predictions`): keras-hub's `(x, mask_ids,
        mask_weights)`, `x` a dict of corrupted `token_ids`, `padding_mask`,
        `segment_ids` (the input's, else zeros) and `mask_positions`.

    Example:

    >>> import tensorflow as tf
    >>> masker = DynamicMLMMasking(
    ...     vocabulary_size=100, mask_token_id=3, special_token_ids=[1, 2],
    ...     mask_rate=0.5, output_mode="dict", seed=7)
    >>> out = masker(tf.constant([[1, 10, 11, 12, 13, 2, 0, 0]]))
    >>> sorted(out)
    ['labels', 'mask', 'token_ids']
    >>> bool(tf.reduce_any(out["mask"][:, 5:]))
    False
    """

    masks_when_called_alone = True

    def __init__(
        self,
        vocabulary_size: int,
        mask_token_id: int,
        mask_rate: "float | keras.optimizers.schedules.LearningRateSchedule" = 0.15,
        mask_token_rate: float = 0.8,
        random_token_rate: float = 0.1,
        special_token_ids: "Sequence[int]" = (),
        pad_token_id: int | None = 0,
        selection: str = "bernoulli",
        max_predictions: int | None = None,
        output_mode: str = "ids",
        ignore_index: int = -100,
        seed: int | None = None,
        granularity: str = "token",
        word_starts: "np.ndarray | Sequence[bool] | None" = None,
        span_length_p: float = 0.2,
        max_span_length: int = 10,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check = validation
        self.vocabulary_size = check.as_int("vocabulary_size", vocabulary_size, 2)
        self.mask_token_id = check.as_int(
            "mask_token_id", mask_token_id, 0, self.vocabulary_size
        )
        self.mask_rate = rate_schedules.as_rate("mask_rate", mask_rate)
        self.mask_token_rate = check.as_float("mask_token_rate", mask_token_rate, 0, 1)
        self.random_token_rate = check.as_float(
            "random_token_rate", random_token_rate, 0, 1
        )
        if self.mask_token_rate + self.random_token_rate > 1 + 1e-9:
            raise ValueError(
                "`mask_token_rate + random_token_rate` must be at most 1. "
                f"Received: mask_token_rate={mask_token_rate!r}, "
                f"random_token_rate={random_token_rate!r}"
            )
        self.special_token_ids = check.as_int_list(
            "special_token_ids", special_token_ids, 0, self.vocabulary_size
        )
        self.pad_token_id = check.as_int(
            "pad_token_id", pad_token_id, 0, self.vocabulary_size, allow_none=True
        )
        self.selection = check.as_choice("selection", selection, SELECTIONS)
        self.max_predictions = check.as_int(
            "max_predictions", max_predictions, 1, allow_none=True
        )
        self.output_mode = check.as_choice("output_mode", output_mode, OUTPUT_MODES)
        self.ignore_index = check.as_int("ignore_index", ignore_index, -(2**63), 2**63)
        self.seed = check.as_seed(seed)
        (self.granularity, self.word_starts, self.span_length_p, self.max_span_length) = (
            granularity_options.checked_options(self, granularity, word_starts, span_length_p, max_span_length)
        )
        # True while a table saved with a model's assets is yet to be loaded.
        self._word_starts_awaited = False
        if self.random_token_rate > 0 and not corruption.allowed_id_count(
            self.vocabulary_size, self.excluded_ids
        ):
            raise ValueError(
                "`random_token_rate` > 0 needs at least one id that is not "
                "special, padding or the mask token to draw from. Received: "
                f"random_token_rate={random_token_rate!r}, "
                f"vocabulary_size={vocabulary_size!r}"
            )
        # A seeded layer draws its masks' seeds from a generator started at
        # `seed`: the same sequence run to run. An unseeded one takes each
        # from the operating system (`seeds.fresh_seed`).
        self._generator = seeds.layer_generator(self.seed)
        # Inside JAX and PyTorch models: a Keras seed generator, whose state
        # Keras carries through jit (fresh masks every step).
        self._backend_seeds = seeds.backend_seed_generator(self.seed)
        # With a scheduled `mask_rate`: the batches masked so far (saved).
        self._masked_batches = rate_schedules.step_counter(self, self.mask_rate, "masked_batches")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "mask_token_id": self.mask_token_id,
                "mask_rate": rate_schedules.serialize_rate(self.mask_rate),
                "mask_token_rate": self.mask_token_rate,
                "random_token_rate": self.random_token_rate,
                "special_token_ids": list(self.special_token_ids),
                "pad_token_id": self.pad_token_id,
                "selection": self.selection,
                "max_predictions": self.max_predictions,
                "output_mode": self.output_mode,
                "ignore_index": self.ignore_index,
                "seed": self.seed,
            }
        )
        config.update(granularity_options.options_config(self))
        return config

    @classmethod
    def from_config(cls, config):
        return granularity_options.from_config(super().from_config, config)

    def save_assets(self, dir_path):
        """Writes the `word_starts` table beside a saved model's weights."""
        granularity_options.save_table(self, dir_path)

    def load_assets(self, dir_path):
        """Reads the `word_starts` table `save_assets` wrote."""
        self.word_starts = granularity_options.load_table(self, dir_path)
        self._word_starts_awaited = self._word_starts_awaited and self.word_starts is None

    def current_mask_rate(self):
        """The mask rate the next call without a `step` uses (a float)."""
        return rate_schedules.current_rate(self.mask_rate, self._masked_batches)

    @property
    def schedule_step(self):
        """With a scheduled `mask_rate`, the batches masked so far (a weight); else `None`."""
        return self._masked_batches

    def call(
        self,
        inputs: "tf.Tensor | tf.RaggedTensor | dict",
        training: "bool | tf.Tensor | None" = None,
        seed: "tf.Tensor | None" = None,
        step: "int | tf.Tensor | None" = None,
    ) -> "tf.Tensor | tf.RaggedTensor | tuple | dict":
        if op_set.for_values(*keras.tree.flatten(inputs)) is op_set.KERAS:
            return self._call_on_backend(inputs, training, seed, step)
        token_ids, rest = self._split_inputs(inputs)
        token_ids = self._check_token_ids(token_ids)
        if training is None or training is False:
            masked = self._unmasked(token_ids)
        elif training is True:
            masked = self._masked(token_ids, seed, rest, step)
        else:
            # A symbolic training flag: both branches share one structure.
            masked = tf.cond(
                tf.cast(training, tf.bool),
                lambda: self._masked(token_ids, seed, rest, step),
                lambda: self._unmasked(token_ids),
            )
        return self._format(rest, token_ids, *masked)

    def compute_output_shape(self, input_shape):
        """The output shapes for ids of `input_shape` (a dict of shapes for a
        dict input), in the structure `output_mode` returns."""
        if isinstance(input_shape, dict):
            inputs = {k: keras.KerasTensor(v, dtype="int32") for k, v in input_shape.items()}
        else:
            inputs = keras.KerasTensor(input_shape, dtype="int32")
        return keras.tree.map_structure(lambda spec: spec.shape, self.compute_output_spec(inputs))

    def compute_output_spec(self, inputs, training=None, seed=None, step=None):
        token_ids, rest = self._split_inputs(inputs)
        rest = passed_through_specs(rest)

        ragged = bool(getattr(token_ids, "ragged", False))

        def like(dtype=token_ids.dtype, shape=token_ids.shape):
            # Per-token outputs keep a ragged input's raggedness.
            return keras.KerasTensor(shape, dtype=dtype, ragged=ragged)

        def fixed(dtype, shape):
            return keras.KerasTensor(shape, dtype=dtype)

        if self.output_mode == "ids":
            return self._merge(rest, like())
        if self.output_mode == "fit":
            return self._merge(rest, like()), like(), like("float32")
        if self.output_mode == "masked_lm":
            return masked_lm_format.masked_lm_spec(token_ids, self.max_predictions)
        outputs = {"token_ids": like(), "labels": like(), "mask": like("bool")}
        if self.max_predictions is not None:
            width = tuple(token_ids.shape[:-1]) + (self.max_predictions,)
            outputs["mask_positions"] = fixed("int32", width)
            outputs["mask_ids"] = fixed(token_ids.dtype, width)
            outputs["mask_weights"] = fixed("float32", width)
        return {**(rest or {}), **outputs}

    # JAX and PyTorch tensors (inside models, under jit): the kernels of
    # `kernels.token_masking` and `kernels.word_masking` with `keras.ops`.

    def _call_on_backend(self, inputs, training, seed, step):
        token_ids, rest = self._split_inputs(inputs)
        token_ids = keras.ops.convert_to_tensor(token_ids)
        validation.check_integer_ids("DynamicMLMMasking", "token_ids", token_ids, (1, 2))
        word_ids = granularity_options.backend_word_ids(
            rest, token_ids, self.granularity, self.word_starts, self._word_starts_awaited
        )
        single = len(token_ids.shape) == 1
        if single:
            token_ids = token_ids[None, :]
            word_ids = None if word_ids is None else word_ids[None, :]
        ops = op_set.KERAS
        if training:
            rate = rate_schedules.backend_rate_for_call(self.mask_rate, self._masked_batches, step)
            corrupted, selected = self._mask_on_backend(ops, token_ids, seed, rate, word_ids)
        else:
            corrupted, selected = token_ids, ops.zeros(ops.shape(token_ids), "bool")
        targets = None
        if self.max_predictions is not None and self.output_mode in ("dict", "masked_lm"):
            targets = token_masking.prediction_targets(
                ops, token_ids, selected, self.max_predictions
            )
        if single:
            token_ids, corrupted, selected = token_ids[0], corrupted[0], selected[0]
            targets = None if targets is None else tuple(t[0] for t in targets)
        return self._format(rest, token_ids, corrupted, selected, targets)

    def _mask_on_backend(self, ops, token_ids, seed, rate, word_ids=None):
        seed = seeds.backend_call_seed(seed, self._backend_seeds)
        options = dict(
            excluded_ids=self.excluded_ids,
            vocabulary_size=self.vocabulary_size,
            mask_rate=rate,
            selection=self.selection,
            max_predictions=self.max_predictions,
            mask_token_id=self.mask_token_id,
            mask_token_rate=self.mask_token_rate,
            random_token_rate=self.random_token_rate,
        )
        if self.granularity == "token":
            return token_masking.select_and_corrupt(ops, token_ids, seed, **options)
        return word_masking.select_and_corrupt(
            ops,
            token_ids,
            seed,
            granularity=self.granularity,
            # A dict's "word_ids" win over the table.
            word_starts=self.word_starts if word_ids is None else None,
            word_ids=word_ids,
            span_length_p=self.span_length_p,
            max_span_length=self.max_span_length,
            **options,
        )

    # Configuration the kernels read.

    @property
    def excluded_ids(self):
        """Sorted ids never selected: special, padding and the mask token."""
        excluded = set(self.special_token_ids) | {self.mask_token_id}
        if self.pad_token_id is not None:
            excluded.add(self.pad_token_id)
        return sorted(excluded)

    @property
    def corruption_shares(self):
        """Shares of the selected tokens masked, randomised and kept."""
        keep = max(0.0, 1.0 - self.mask_token_rate - self.random_token_rate)
        return (self.mask_token_rate, self.random_token_rate, keep)

    # Inputs and validation.

    def _split_inputs(self, inputs):
        token_ids, rest = split_token_ids("DynamicMLMMasking", inputs, self._output_keys)
        return cast_float_ids_in_models(token_ids, self.called_inside_model), rest

    @property
    def _output_keys(self):
        targets = ("mask_positions", "mask_ids", "mask_weights") if self.max_predictions else ()
        return {"dict": ("labels", "mask") + targets, "masked_lm": ("padding_mask",) + targets}.get(self.output_mode, ())

    def _check_token_ids(self, token_ids):
        validation.check_integer_ids("DynamicMLMMasking", "token_ids", token_ids, (1, 2))
        if self._per_sequence:  # ragged rows are padded into a batch: not under XLA
            validation.refuse_ragged_under_xla(
                "DynamicMLMMasking", "token_ids", token_ids, random_bits.in_xla_context()
            )
        if self.output_mode == "dict":  # labels take the ids' dtype
            validation.fits_dtype("ignore_index", self.ignore_index, token_ids, "labels")
        with tf.control_dependencies(validation.rank_checks("DynamicMLMMasking", "token_ids", token_ids, (1, 2))):
            return tf.identity(token_ids) if validation.static_rank(token_ids) is None else token_ids

    # Masking.

    def _seed(self, seed):
        return seeds.call_seed(seed, self._generator)

    def _select_and_corrupt(self, token_ids, seed, rate, valid=None, word_ids=None):
        """`(corrupted, selected)` for ids of any rank (`[B, T]` when per row).

        `rate` is this call's mask rate (a float, or a scheduled tensor).
        """
        selection_seed, cap_seed, corruption_seed = seeds.split_seed(seed, 3)
        in_vocabulary = self.vocabulary_size if random_bits.in_xla_context() else None  # no assert in XLA
        eligible = selection_kernels.eligible_tokens(token_ids, self.excluded_ids, valid, in_vocabulary)
        outcomes = None
        if self.granularity != "token":
            selected = granularity_options.select_for_layer(
                self, token_ids, eligible, selection_seed, word_ids, mask_rate=rate)
        elif self.selection == "bernoulli":
            selected, outcomes = selection_kernels.bernoulli_tokens(
                eligible, rate, selection_seed, self.corruption_shares
            )
            if self.max_predictions is not None:
                selected = selection_kernels.cap_selections(
                    selected, self.max_predictions, cap_seed
                )
        else:
            eligible_count = tf.reduce_sum(tf.cast(eligible, tf.int32), axis=1)
            counts = selection_kernels.exact_counts(
                eligible_count, rate, self.max_predictions
            )
            most = selection_kernels.exact_count_bound(
                tf.shape(token_ids)[1], rate, self.max_predictions)
            selected, outcomes = selection_kernels.exact_tokens(
                eligible, counts, selection_seed, eligible_count, most, self.corruption_shares)
        corrupted = corruption.bert_corruption(
            token_ids,
            selected,
            corruption_seed,
            mask_token_id=self.mask_token_id,
            mask_token_rate=self.mask_token_rate,
            random_token_rate=self.random_token_rate,
            vocabulary_size=self.vocabulary_size,
            replacement_excluded_ids=self.excluded_ids,
            outcomes=outcomes,
        )
        return corrupted, selected

    @property
    def _per_sequence(self):
        per_row = self.selection == "exact" or self.granularity != "token"
        return per_row or self.max_predictions is not None

    def _masked(self, token_ids, seed, rest=None, step=None):
        """`(corrupted, selected, targets)`, `targets` None or a triple."""
        seed = self._seed(seed)
        rate = rate_schedules.rate_for_call(self.mask_rate, self._masked_batches, step)
        word_ids = granularity_options.word_ids_input(
            rest, token_ids, self.granularity, self.word_starts, self._word_starts_awaited)
        token_ids = map_values(
            lambda ids: validation.checked_ids_below("DynamicMLMMasking", ids, self.vocabulary_size),
            token_ids,
        )
        if isinstance(token_ids, tf.RaggedTensor):
            return self._masked_ragged(token_ids, seed, rate, word_ids)
        if not self._per_sequence:
            corrupted, selected = self._select_and_corrupt(token_ids, seed, rate)
            return corrupted, selected, None
        if token_ids.shape.rank == 2:
            corrupted, selected = self._select_and_corrupt(token_ids, seed, rate, word_ids=word_ids)
            return corrupted, selected, self._targets(token_ids, selected)
        # `[T]`, or a rank known only at run time (checked to be 1 or 2).
        shape = tf.shape(token_ids)
        batch = tf.reshape(token_ids, [-1, shape[-1]])
        corrupted, selected = self._select_and_corrupt(batch, seed, rate, word_ids=word_ids)
        targets = self._targets(batch, selected)
        if targets is not None:
            targets = tuple(tf.reshape(t, tf.concat([shape[:-1], [-1]], 0)) for t in targets)
        return tf.reshape(corrupted, shape), tf.reshape(selected, shape), targets

    def _masked_ragged(self, token_ids, seed, rate, word_ids=None):
        if not self._per_sequence:
            corrupted, selected = self._select_and_corrupt(token_ids.flat_values, seed, rate)
            return (
                token_ids.with_flat_values(corrupted),
                token_ids.with_flat_values(selected),
                None,
            )
        lengths = token_ids.row_lengths()
        dense = token_ids.to_tensor()
        valid = tf.sequence_mask(lengths, tf.shape(dense)[1])
        corrupted, selected = self._select_and_corrupt(dense, seed, rate, valid, word_ids)
        targets = self._targets(dense, selected)
        # Back into the input's own row partition (its splits dtype kept).
        return (
            token_ids.with_flat_values(tf.boolean_mask(corrupted, valid)),
            token_ids.with_flat_values(tf.boolean_mask(selected, valid)),
            targets,
        )

    def _targets(self, token_ids, selected):
        if self.max_predictions is None or self.output_mode not in ("dict", "masked_lm"):
            return None
        return formatting.prediction_targets(token_ids, selected, self.max_predictions)

    def _unmasked(self, token_ids):
        if isinstance(token_ids, tf.RaggedTensor):
            selected = token_ids.with_flat_values(
                tf.zeros_like(token_ids.flat_values, tf.bool)
            )
            dense_shape = tf.cast(token_ids.bounding_shape(), tf.int32)
        else:
            selected = tf.zeros_like(token_ids, tf.bool)
            dense_shape = tf.shape(token_ids)
        targets = None
        if self.max_predictions is not None and self.output_mode in ("dict", "masked_lm"):
            targets = formatting.empty_prediction_targets(
                dense_shape[:-1], self.max_predictions, token_ids.dtype
            )
        return token_ids, selected, targets

    # Outputs.

    @staticmethod
    def _merge(rest, token_ids):
        if rest is None:
            return token_ids
        return {**rest, "token_ids": token_ids}

    def _format(self, rest, original, corrupted, selected, targets):
        if self.output_mode == "ids":
            return self._merge(rest, corrupted)
        if self.output_mode == "masked_lm":
            return masked_lm_format.masked_lm_triple(
                op_set.for_values(original), rest, original, corrupted, targets, self.pad_token_id
            )
        if self.output_mode == "fit":
            weights = map_values(formatting.sample_weights, selected)
            return self._merge(rest, corrupted), original, weights
        flat_selected = selected.flat_values if isinstance(selected, tf.RaggedTensor) else selected
        labels = map_values(
            lambda ids: formatting.labels(ids, flat_selected, self.ignore_index), original
        )
        outputs = {"token_ids": corrupted, "labels": labels, "mask": selected}
        if targets is not None:
            positions, ids, weights = targets
            outputs.update(
                {"mask_positions": positions, "mask_ids": ids, "mask_weights": weights}
            )
        return {**(rest or {}), **outputs}
