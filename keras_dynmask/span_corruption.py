"""`SpanCorruption`: T5's span corruption with sentinels, a fresh draw every call."""

import collections
from collections.abc import Sequence

import keras
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import rate_schedules
from keras_dynmask import validation
from keras_dynmask.kernels import noise_spans
from keras_dynmask.kernels import op_set
from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import seeds
from keras_dynmask.kernels import sentinels as sentinel_kernels
from keras_dynmask.kernels import span_noise
from keras_dynmask.masking_layer import MaskingLayer
from keras_dynmask.masking_layer import passed_through_specs
from keras_dynmask.masking_layer import split_token_ids

# How each row is corrupted: its counts, and for mixtures of denoisers which
# rows take sentinels, a token put first in the inputs and extra outputs.
RowPlan = collections.namedtuple(
    "RowPlan", ["num_noise", "num_spans", "with_sentinels", "inputs_first_ids", "extras"]
)


@keras.saving.register_keras_serializable(package="keras_dynmask")
class SpanCorruption(MaskingLayer):
    """T5 span corruption: noise spans become sentinels, a new draw every call.

    Per sequence of `n` real tokens (padding at the end excluded),
    `num_noise = clip(round(n * noise_density), 1, n - 1)` tokens in
    `num_spans = max(1, round(num_noise / mean_noise_span_length))` spans
    (at most `num_noise`, `n - num_noise` and the number of sentinels)
    become noise, with uniformly random noise and non-noise span lengths
    that alternate, non-noise first (T5's `random_spans_noise_mask`, in the
    same float32 arithmetic). `inputs` holds the non-noise tokens with each
    noise span replaced by the next sentinel (`sentinel_ids[0]`, `[1]`,
    ...); `targets` holds each noise span's sentinel followed by its tokens.
    Putting the targets' spans back at the inputs' sentinels gives the
    sequence back exactly. A sequence of fewer than 2 tokens has no noise.

    A token equal to a sentinel id, or outside `[0, vocabulary_size)`, is an
    error (a `ValueError` eagerly, a failed assertion in a graph). Under XLA
    the assertion is dropped: such a token then passes like any other. XLA
    also needs fixed `inputs_length` and `targets_length` and dense ids (pad
    ragged ones first); anything else is a `ValueError` saying so.

    On JAX and PyTorch tensors (inside a model, under jit, or called on a
    backend tensor, which returns tensors of that backend) the layer
    computes with `keras.ops` (`keras_dynmask.kernels.span_noise`) and needs
    `inputs_length` and `targets_length` too (a `ValueError` otherwise: set
    them, or corrupt in `tf.data`). There no value is checked: a token equal
    to a sentinel id is treated like any other token, so the outputs then
    hold that id where a sentinel could be expected (check ids upstream);
    an id outside the vocabulary passes unchanged.

    Like `DynamicMLMMasking`, the layer runs in `tf.data`, inside a model
    (where it corrupts only when Keras trains; otherwise every row passes
    with no noise) and in an exported SavedModel, with the same seeds: fresh
    draws when unseeded, a reproducible sequence with a constructor `seed`,
    a pure function of `(inputs, seed)` with a call-time `seed`, and keyed
    per element by `keras_dynmask.data.mask_dataset`.

    Args:
        vocabulary_size: int >= 2, ids lie in `[0, vocabulary_size)`.
        noise_density: float in `(0, 1)`, the share of tokens made noise, or
            a Keras `LearningRateSchedule` of the step (as `mask_rate` of
            `DynamicMLMMasking`: a saved count of corrupted batches, or
            `mask_dataset`'s `epoch * N + index`).
        mean_noise_span_length: float >= 1.
        sentinel_ids: `None` or distinct ids, the sentinels in order. `None`:
            the vocabulary's top ids, `vocabulary_size - 1`,
            `vocabulary_size - 2`, ... (`num_sentinels` of them). T5's
            released vocabulary (32128 ids) puts its 100 extra ids below 28
            unused padding ids: `<extra_id_0>` is 32099, `<extra_id_k>` is
            `32099 - k`; to train a released T5 checkpoint, pass
            `sentinel_ids=SpanCorruption.T5_SENTINEL_IDS` (those 100 ids).
        num_sentinels: int >= 1, how many default sentinels (ignored when
            `sentinel_ids` is given).
        eos_id: `None` or int, appended to inputs and targets.
        pad_token_id: int or `None`: padding, ignored at the end of a row and
            used to pad the outputs (0 when `None`).
        inputs_length: `None` (pad to the batch's longest) or int >= 1:
            pad with `pad_token_id` or cut to this length.
        targets_length: the same for the targets.
        seed: `None` or int, seeds the layer's sequence of draws.
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        inputs: int32/int64 ids `[T]` or `[B, T]` (padding at the end of a
            row), a `tf.RaggedTensor` `[B, (T)]`, or a dict holding
            `"token_ids"` (its other entries pass through; they must not be
            named `"inputs"` or `"targets"`).
        training: `False` corrupts nothing. `None` corrupts when the layer
            is called on its own, and inside a model only when Keras trains.
        seed: optional shape-`[2]` int tensor; the output is then a pure
            function of `(inputs, seed)`.
        step: optional int scalar, the schedule step (scheduled
            `noise_density` only).

    Returns:
        A dict `{"inputs", "targets"}` of the input's dtype: `[B, L]`
        (`[L]` for `[T]` input), `L` the set length or the batch's longest
        row; ragged `[B, (L)]` for ragged input when the length is not set.
        Other entries of a dict input pass through.

    Example:

    >>> import tensorflow as tf
    >>> corrupt = SpanCorruption(vocabulary_size=100, noise_density=0.3,
    ...                          num_sentinels=10, eos_id=1)
    >>> out = corrupt(tf.constant([[5, 6, 7, 8, 9, 10, 11, 12, 0, 0]]),
    ...               seed=tf.constant([1, 2]))
    >>> sorted(out)
    ['inputs', 'targets']
    >>> int(out["inputs"][0, -1]), int(out["targets"][0, 0])
    (1, 99)
    """

    OUTPUT_KEYS = ("inputs", "targets")
    masks_when_called_alone = True

    # The sentinels of T5's released vocabulary (32000 SentencePiece pieces,
    # the extra ids 32099 down to 32000, then 28 unused ids up to 32127):
    # `<extra_id_0>` = 32099, `<extra_id_1>` = 32098, ..., `<extra_id_99>` = 32000.
    T5_SENTINEL_IDS = tuple(range(32099, 31999, -1))

    def __init__(
        self,
        vocabulary_size: int,
        noise_density: "float | keras.optimizers.schedules.LearningRateSchedule" = 0.15,
        mean_noise_span_length: float = 3.0,
        sentinel_ids: "Sequence[int] | None" = None,
        num_sentinels: int = 100,
        eos_id: int | None = None,
        pad_token_id: int | None = 0,
        inputs_length: int | None = None,
        targets_length: int | None = None,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check = validation
        self.vocabulary_size = check.as_int("vocabulary_size", vocabulary_size, 2)
        self._noise_density = rate_schedules.as_rate(
            "noise_density", noise_density, 0, 1, low_open=True, high_open=True
        )
        self.mean_noise_span_length = check.as_float(
            "mean_noise_span_length", mean_noise_span_length, 1
        )
        self._configure_common(
            sentinel_ids, num_sentinels, eos_id, pad_token_id, inputs_length,
            targets_length, seed,
        )
        # With a scheduled `noise_density`: the batches corrupted so far (saved).
        self._noise_steps = rate_schedules.step_counter(
            self, self._noise_density, "corrupted_batches"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "noise_density": rate_schedules.serialize_rate(self._noise_density),
                "mean_noise_span_length": self.mean_noise_span_length,
            }
        )
        config.update(self._common_config())
        return config

    def _configure_common(
        self, sentinel_ids, num_sentinels, eos_id, pad_token_id, inputs_length,
        targets_length, seed,
    ):
        """Validates the arguments every span-corruption layer shares."""
        check = validation
        vocabulary_size = self.vocabulary_size
        if sentinel_ids is None:
            count = check.as_int("num_sentinels", num_sentinels, 1)
            if count >= vocabulary_size:
                raise ValueError(
                    f"`num_sentinels` (default 100) must be below vocabulary_size="
                    f"{vocabulary_size}: the default sentinels are the vocabulary's top ids, "
                    "and some ids must remain for the tokens. Pass a smaller "
                    f"`num_sentinels` or `sentinel_ids`. Received: num_sentinels={num_sentinels!r}"
                )
            self.num_sentinels = count
            self._given_sentinel_ids = None
            self.sentinel_ids = [vocabulary_size - 1 - i for i in range(self.num_sentinels)]
        else:
            self.sentinel_ids = check.as_int_list("sentinel_ids", sentinel_ids, 0, vocabulary_size)
            self._given_sentinel_ids = list(self.sentinel_ids)
            if not self.sentinel_ids or len(set(self.sentinel_ids)) != len(self.sentinel_ids):
                raise ValueError(
                    "`sentinel_ids` must be distinct ids, at least one. "
                    f"Received: sentinel_ids={sentinel_ids!r}"
                )
            self.num_sentinels = len(self.sentinel_ids)
        self.eos_id = check.as_int("eos_id", eos_id, 0, vocabulary_size, allow_none=True)
        self.pad_token_id = check.as_int(
            "pad_token_id", pad_token_id, 0, vocabulary_size, allow_none=True
        )
        for name, value in (("eos_id", self.eos_id), ("pad_token_id", self.pad_token_id)):
            if value is not None and value in self.sentinel_ids:
                raise ValueError(
                    f"`{name}` must not be a sentinel id (sentinels: "
                    f"{self._sentinel_text()}). Received: {name}={value!r}"
                )
        if self.eos_id is not None and self.eos_id == self.pad_token_id:
            raise ValueError(
                "`eos_id` must differ from `pad_token_id`: an end read as padding "
                "would be dropped with it (a row's real tokens end at its last "
                f"non-padding id). Received: eos_id={eos_id!r}, pad_token_id={pad_token_id!r}"
            )
        self.inputs_length = check.as_int("inputs_length", inputs_length, 1, allow_none=True)
        self.targets_length = check.as_int("targets_length", targets_length, 1, allow_none=True)
        self.seed = check.as_seed(seed)
        # A seeded layer draws its seeds from a generator started at `seed`;
        # an unseeded one takes each from the operating system.
        self._generator = seeds.layer_generator(self.seed)
        # On JAX and PyTorch: a `keras.random.SeedGenerator` (None on TensorFlow).
        self._backend_seeds = seeds.backend_seed_generator(self.seed)

    def _common_config(self):
        return {
            "sentinel_ids": self._given_sentinel_ids,
            "num_sentinels": self.num_sentinels,
            "eos_id": self.eos_id,
            "pad_token_id": self.pad_token_id,
            "inputs_length": self.inputs_length,
            "targets_length": self.targets_length,
            "seed": self.seed,
        }

    def _sentinel_text(self):
        ids = self.sentinel_ids
        return f"{ids[0]}..{ids[-1]}" if len(ids) > 4 else str(ids)

    @property
    def noise_density(self):
        """The share of tokens made noise (a float or a schedule): the one place the layer reads it."""
        return self._noise_density

    @property
    def _scheduled(self):
        return rate_schedules.is_schedule(getattr(self, "_noise_density", None))

    @property
    def schedule_step(self):
        """With a scheduled `noise_density`, the batches corrupted so far; else `None`."""
        return getattr(self, "_noise_steps", None)

    def current_noise_density(self):
        """The noise density the next call without a `step` uses (a float)."""
        return rate_schedules.current_rate(self._noise_density, self.schedule_step)

    def lengths_for(self, inputs_length: int) -> "noise_spans.SpanLengths":
        """Raw and target lengths for a wanted `inputs_length` (T5's helper).

        Args:
            inputs_length: int >= 1, the wanted length of the inputs.

        Returns:
            A `SpanLengths(tokens_length, targets_length)`: the most real
            tokens a row may hold for its inputs to fit (cut rows of raw
            text to this), and the targets' length for such a row.
        """
        inputs_length = validation.as_int("inputs_length", inputs_length, 1)
        if self._scheduled:
            raise ValueError(
                "`lengths_for` needs a fixed noise_density; with a schedule, "
                "build a SpanCorruption at the density to plan for (e.g. the "
                "schedule's largest) and ask it. Received: "
                f"noise_density={self.noise_density!r}"
            )
        return noise_spans.lengths_for_inputs_length(
            inputs_length,
            self.noise_density,
            self.mean_noise_span_length,
            extra_inputs_tokens=int(self.eos_id is not None),
            max_spans=self.num_sentinels,
        )

    # Calls.

    def call(
        self,
        inputs: "tf.Tensor | tf.RaggedTensor | dict",
        training: "bool | tf.Tensor | None" = None,
        seed: "tf.Tensor | None" = None,
        step: "int | tf.Tensor | None" = None,
    ) -> dict:
        if op_set.for_values(*keras.tree.flatten(inputs)) is op_set.KERAS:
            return self._call_on_backend(inputs, training, seed, step)
        token_ids, rest = self._split_inputs(inputs)
        name = type(self).__name__
        validation.check_integer_ids(name, "token_ids", token_ids, (1, 2))
        validation.refuse_ragged_under_xla(name, "token_ids", token_ids, random_bits.in_xla_context())
        checks = validation.rank_checks(name, "token_ids", token_ids, (1, 2))
        if checks:  # a rank known only at run time
            with tf.control_dependencies(checks):
                token_ids = tf.identity(token_ids)
        if random_bits.in_xla_context() and None in (self.inputs_length, self.targets_length):
            raise ValueError(
                f"{type(self).__name__} under XLA (`jit_compile=True`, Keras' default on a "
                "GPU) needs fixed `inputs_length` and `targets_length` (static output "
                f"shapes). Received: inputs_length={self.inputs_length!r}, "
                f"targets_length={self.targets_length!r}"
            )
        if training is None or training is False:
            outputs = self._outputs(token_ids, None)
        elif training is True:
            outputs = self._outputs(token_ids, self._seed(seed), step)
        else:
            outputs = tf.cond(
                tf.cast(training, tf.bool),
                lambda: self._outputs(token_ids, self._seed(seed), step),
                lambda: self._outputs(token_ids, None),
            )
        return {**(rest or {}), **outputs}

    def compute_output_shape(self, input_shape):
        """The output shapes (a dict) for ids of `input_shape` (a dict of
        shapes for a dict input)."""
        if isinstance(input_shape, dict):
            inputs = {k: keras.KerasTensor(v, dtype="int32") for k, v in input_shape.items()}
        else:
            inputs = keras.KerasTensor(input_shape, dtype="int32")
        return keras.tree.map_structure(lambda spec: spec.shape, self.compute_output_spec(inputs))

    def compute_output_spec(self, inputs, training=None, seed=None, step=None):
        token_ids, rest = self._split_inputs(inputs)
        rest = passed_through_specs(rest)
        batch = tuple(token_ids.shape[:-1])
        ragged = validation.is_ragged(token_ids)
        outputs = {}
        for key, length in zip(self.OUTPUT_KEYS, (self.inputs_length, self.targets_length)):
            outputs[key] = keras.KerasTensor(
                batch + (length,), dtype=token_ids.dtype, ragged=ragged and length is None
            )
        for key, dtype in self._extra_specs():
            outputs[key] = keras.KerasTensor(batch, dtype=dtype)
        return {**(rest or {}), **outputs}

    def _extra_specs(self):
        return ()

    def _split_inputs(self, inputs):
        return split_token_ids(type(self).__name__, inputs, self.OUTPUT_KEYS)

    def _seed(self, seed):
        return seeds.call_seed(seed, self._generator)

    # JAX and PyTorch tensors (inside models, under jit): the kernel of
    # `kernels.span_noise` with `keras.ops`, at the set output lengths.

    def _call_on_backend(self, inputs, training, seed, step):
        name = type(self).__name__
        backend = keras.backend.backend()
        token_ids, rest = self._split_inputs(inputs)
        token_ids = keras.ops.convert_to_tensor(token_ids)
        validation.check_integer_ids(name, "token_ids", token_ids, (1, 2))
        if None in (self.inputs_length, self.targets_length):
            raise ValueError(
                f"{name} on {backend} tensors needs fixed `inputs_length` and "
                "`targets_length` (static output shapes under jit); without them "
                "it runs on TensorFlow tensors only (ds.map(layer) in tf.data). "
                f"Received: inputs_length={self.inputs_length!r}, "
                f"targets_length={self.targets_length!r}"
            )
        single = len(token_ids.shape) == 1
        if single:
            token_ids = token_ids[None, :]
        if not isinstance(token_ids.shape[-1], int):
            raise ValueError(
                f"{name} on {backend} tensors needs a static sequence length. "
                f"Received: token_ids with shape={tuple(token_ids.shape)}"
            )
        ops = op_set.KERAS
        batch_size, width = ops.shape(token_ids)
        lengths = span_noise.real_lengths(ops, token_ids, self.pad_token_id)
        if training:
            seed = seeds.backend_call_seed(seed, self._backend_seeds)
            plan = self._backend_row_plan(ops, lengths, width, ops.fold_seed(seed, 0), step)
        else:
            seed = ops.zeros((2,), "int32")
            zeros = ops.zeros_like(lengths)
            plan = RowPlan(zeros, zeros, None, None, self._unchanged_extras(batch_size, ops))
        inputs_ids, targets = span_noise.corrupt_counted_spans(
            ops,
            token_ids,
            seed,
            lengths,
            plan.num_noise,
            plan.num_spans,
            sentinel_ids=self.sentinel_ids,
            eos_id=self.eos_id,
            pad_token_id=self.pad_token_id,
            inputs_length=self.inputs_length,
            targets_length=self.targets_length,
            with_sentinels=plan.with_sentinels,
            inputs_first_ids=plan.inputs_first_ids,
        )
        outputs = {"inputs": inputs_ids, "targets": targets, **plan.extras}
        if single:
            outputs = {key: value[0] for key, value in outputs.items()}
        return {**(rest or {}), **outputs}

    def _backend_row_plan(self, ops, lengths, width, seed, step):
        """The `RowPlan` on JAX and PyTorch: T5's counts at this call's density."""
        density = rate_schedules.backend_rate_for_call(self._noise_density, self._noise_steps, step)
        num_noise, num_spans = span_noise.span_counts(
            ops, lengths, width, density, self.mean_noise_span_length, self.num_sentinels
        )
        return RowPlan(num_noise, num_spans, None, None, {})

    # Corruption.

    def _checked(self, token_ids):
        """`token_ids`, after checking every id is in range and none a sentinel.

        One unsigned max decides when the sentinels are the vocabulary's
        top ids (the default); the message's values are computed only on
        failure. Padding is never a sentinel, so every position is checked.
        """
        name = type(self).__name__
        lowest = min(self.sentinel_ids)
        top_range = sorted(self.sentinel_ids) == list(range(lowest, self.vocabulary_size))
        if top_range:
            valid = validation.ids_below(token_ids, lowest)
        else:
            valid = tf.logical_and(
                validation.ids_below(token_ids, self.vocabulary_size),
                tf.logical_not(
                    tf.reduce_any(sentinel_kernels.sentinel_tokens(token_ids, self.sentinel_ids))
                ),
            )

        def failed():
            is_sentinel = sentinel_kernels.sentinel_tokens(token_ids, self.sentinel_ids)
            checks = validation.require(
                tf.logical_not(tf.reduce_any(is_sentinel)),
                f"{name} received a sentinel id among the tokens (sentinels: "
                f"{self._sentinel_text()}), which would be confused with a "
                "corrupted span",
                sentinel_positions=tf.where(is_sentinel)[:8],
            )
            checks += validation.require(
                validation.ids_below(token_ids, self.vocabulary_size),
                f"{name} received token ids outside [0, vocabulary_size="
                f"{self.vocabulary_size})",
                min_id=tf.reduce_min(token_ids),
                max_id=tf.reduce_max(token_ids),
            )
            with tf.control_dependencies(checks):
                return tf.identity(token_ids)

        if tf.executing_eagerly():
            return token_ids if bool(valid) else failed()
        return tf.cond(valid, lambda: token_ids, failed)

    def _count_bounds(self, width):
        """`(max_nonnoise, max_noise, max_spans)` over rows of <= `width` tokens."""
        if self._scheduled:
            # Any density: bounds that hold for all (static where `width` is).
            if tf.is_tensor(width):
                most = tf.maximum(width - 1, 1)
                return most, most, tf.maximum(tf.minimum(width // 2, self.num_sentinels), 1)
            most = max(int(width) - 1, 1)
            return most, most, max(min(int(width) // 2, self.num_sentinels), 1)
        settings = [(self.noise_density, self.mean_noise_span_length)]
        return noise_spans.count_bounds(width, settings, self.num_sentinels)

    def _row_plan(self, lengths, seed, density=None):
        density = self.noise_density if density is None else density
        num_noise, num_spans = noise_spans.span_counts(
            lengths, density, self.mean_noise_span_length, self.num_sentinels
        )
        return RowPlan(num_noise, num_spans, None, None, {})

    def _unchanged_extras(self, batch_size, ops=None):
        """Extra outputs of a call that corrupts nothing (none here)."""
        return {}

    def _outputs(self, token_ids, seed, step=None):
        """The output dict; `seed=None` corrupts nothing."""
        rank = validation.static_rank(token_ids)
        rank_one = rank == 1
        ragged = isinstance(token_ids, tf.RaggedTensor)
        if ragged:
            fill = self.pad_token_id if self.pad_token_id is not None else 0
            dense = token_ids.to_tensor(default_value=tf.constant(fill, token_ids.dtype))
            lengths = tf.cast(token_ids.row_lengths(), tf.int32)
            if self.pad_token_id is not None:
                lengths = tf.minimum(
                    lengths, sentinel_kernels.trailing_lengths(dense, self.pad_token_id)
                )
        elif rank is None:  # `[T]` or `[B, T]`, known at run time (checked)
            dense = tf.reshape(token_ids, [-1, tf.shape(token_ids)[-1]])
            lengths = sentinel_kernels.trailing_lengths(dense, self.pad_token_id)
        else:
            dense = token_ids[None, :] if rank_one else token_ids
            lengths = sentinel_kernels.trailing_lengths(dense, self.pad_token_id)
        if seed is None:
            batch_size = tf.shape(dense)[0]
            zeros = tf.zeros_like(lengths)
            plan = RowPlan(zeros, zeros, None, None, self._unchanged_extras(batch_size))
            zeros = zeros[:, None]
            layout = noise_spans.SpanLayout(
                tf.concat([zeros, lengths[:, None]], 1), tf.concat([zeros, zeros], 1)
            )
        else:
            dense = self._checked(dense)
            plan_seed, spans_seed = seeds.split_seed(seed, 2)
            if self._scheduled:
                density = rate_schedules.rate_for_call(
                    self._noise_density, self._noise_steps, step
                )
                plan = self._row_plan(lengths, plan_seed, density)
            else:
                plan = self._row_plan(lengths, plan_seed)
            width = dense.shape[1]
            bounds = self._count_bounds(tf.shape(dense)[1] if width is None else width)
            layout = noise_spans.span_layout(
                lengths, plan.num_noise, plan.num_spans, spans_seed, bounds
            )
        inputs, inputs_lengths, targets, targets_lengths = sentinel_kernels.corrupt_spans(
            dense,
            layout,
            plan.num_spans,
            self.sentinel_ids,
            self.pad_token_id,
            eos_id=self.eos_id,
            inputs_width=self.inputs_length,
            targets_width=self.targets_length,
            with_sentinels=plan.with_sentinels,
            inputs_first_ids=plan.inputs_first_ids,
        )
        outputs = {"inputs": inputs, "targets": targets}
        if ragged:
            if self.inputs_length is None:
                outputs["inputs"] = tf.RaggedTensor.from_tensor(inputs, lengths=inputs_lengths)
            if self.targets_length is None:
                outputs["targets"] = tf.RaggedTensor.from_tensor(targets, lengths=targets_lengths)
        if rank_one:
            outputs = {key: value[0] for key, value in outputs.items()}
            extras = {key: value[0] for key, value in plan.extras.items()}
        elif rank is None and not ragged:  # back to the input's rank
            batch_shape = tf.shape(token_ids)[:-1]
            outputs = {
                key: tf.reshape(value, tf.concat([batch_shape, [-1]], 0))
                for key, value in outputs.items()
            }
            extras = {key: tf.reshape(value, batch_shape) for key, value in plan.extras.items()}
        else:
            extras = dict(plan.extras)
        return {**outputs, **extras}
