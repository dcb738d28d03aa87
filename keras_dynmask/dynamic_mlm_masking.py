"""`DynamicMLMMasking`: a fresh masked-LM corruption on every batch."""

import keras
import tensorflow as tf

from keras_dynmask.kernels import mlm_masking
from keras_dynmask.kernels.seeds import fresh_seed
from keras_dynmask.masking_layer import MaskingLayer
from keras_dynmask.masking_layer import called_from_another_layer
from keras_dynmask.masking_layer import is_symbolic
from keras_dynmask.masking_layer import to_tensor

OUTPUT_MODES = ("ids", "fit", "dict")
SELECTIONS = ("bernoulli", "exact")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name, value, low, high=None):
    if not _is_int(value) or value < low or (high is not None and value >= high):
        bound = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(
            f"`{name}` must be an integer {bound}. Received: {name}={value!r}"
        )


def _check_rate(name, value, low_open=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (0 < value <= 1) if low_open else (0 <= value <= 1)
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(
            f"`{name}` must be a float in {interval}. Received: {name}={value!r}"
        )


@keras.saving.register_keras_serializable(package="keras_dynmask")
class DynamicMLMMasking(MaskingLayer):
    """Masks tokens for masked-LM training, drawing a new mask every call.

    Each eligible token is selected with probability `mask_rate` (or, with
    `selection="exact"`, exactly `round(mask_rate * eligible)` tokens per
    sequence). A selected token is replaced by `mask_token_id` with
    probability `mask_token_rate`, by a random id with probability
    `random_token_rate` (drawn uniformly from the ids that are neither
    special, padding nor the mask token), and keeps its id otherwise. Special
    tokens, padding and tokens already equal to `mask_token_id` are never
    selected.

    The same layer runs in a `tf.data` pipeline (`ds.map(layer)`), inside a
    Keras model (where, like `Dropout`, it masks only when Keras trains the
    model), and in an exported SavedModel. Called on its own (directly or in
    `tf.data`) it masks unless `training=False` is passed.

    Randomness: with no seed anywhere, every call draws a fresh mask, and
    every epoch of `ds.map(layer)` differs from the last, also after
    `keras.utils.set_random_seed`, as does every tf.data service worker and
    every replica (the seeds come from the operating system). A constructor
    `seed` makes the sequence of masks reproducible run to run. A call-time `seed` (shape `[2]` int
    tensor) makes the output a pure function of `(inputs, seed)`; see
    `keras_dynmask.data.mask_dataset` for reproducible `tf.data` epochs.

    Args:
        vocabulary_size: int >= 2, ids lie in `[0, vocabulary_size)`.
        mask_token_id: int in `[0, vocabulary_size)`, the mask token.
        mask_rate: float in `(0, 1]`, chance each eligible token is selected.
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
        output_mode: `"ids"`, `"fit"` or `"dict"` (see Returns).
        ignore_index: label value at unselected positions in `"dict"` mode.
        seed: `None` or int, seeds the layer's sequence of masks.
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        inputs: int32/int64 ids of shape `[T]` or `[B, T]`, a
            `tf.RaggedTensor` `[B, (T)]`, or a dict holding `"token_ids"`
            (its other entries pass through untouched).
        training: `False` masks nothing. `None` masks when the layer is
            called on its own, and inside a model only when Keras trains.
        seed: optional shape-`[2]` int tensor; the output is then a pure
            function of `(inputs, seed)`.

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

    def __init__(
        self,
        vocabulary_size,
        mask_token_id,
        mask_rate=0.15,
        mask_token_rate=0.8,
        random_token_rate=0.1,
        special_token_ids=(),
        pad_token_id=0,
        selection="bernoulli",
        max_predictions=None,
        output_mode="ids",
        ignore_index=-100,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_int("vocabulary_size", vocabulary_size, 2)
        _check_int("mask_token_id", mask_token_id, 0, vocabulary_size)
        _check_rate("mask_rate", mask_rate, low_open=True)
        _check_rate("mask_token_rate", mask_token_rate)
        _check_rate("random_token_rate", random_token_rate)
        if mask_token_rate + random_token_rate > 1 + 1e-9:
            raise ValueError(
                "`mask_token_rate + random_token_rate` must be at most 1. "
                f"Received: mask_token_rate={mask_token_rate!r}, "
                f"random_token_rate={random_token_rate!r}"
            )
        if isinstance(special_token_ids, (str, bytes)) or not hasattr(
            special_token_ids, "__iter__"
        ):
            raise ValueError(
                "`special_token_ids` must be a list of ints. "
                f"Received: special_token_ids={special_token_ids!r}"
            )
        special_token_ids = list(special_token_ids)
        for token_id in special_token_ids:
            if not _is_int(token_id) or not 0 <= token_id < vocabulary_size:
                raise ValueError(
                    "`special_token_ids` must hold ints in "
                    f"[0, {vocabulary_size}). Received: "
                    f"special_token_ids={special_token_ids!r}"
                )
        if pad_token_id is not None:
            _check_int("pad_token_id", pad_token_id, 0, vocabulary_size)
        if selection not in SELECTIONS:
            raise ValueError(
                f"`selection` must be one of {SELECTIONS}. "
                f"Received: selection={selection!r}"
            )
        if max_predictions is not None:
            _check_int("max_predictions", max_predictions, 1)
        if output_mode not in OUTPUT_MODES:
            raise ValueError(
                f"`output_mode` must be one of {OUTPUT_MODES}. "
                f"Received: output_mode={output_mode!r}"
            )
        if not _is_int(ignore_index):
            raise ValueError(
                f"`ignore_index` must be an int. Received: ignore_index={ignore_index!r}"
            )
        if seed is not None and not _is_int(seed):
            raise ValueError(f"`seed` must be None or an int. Received: seed={seed!r}")
        self.vocabulary_size = vocabulary_size
        self.mask_token_id = mask_token_id
        self.mask_rate = mask_rate
        self.mask_token_rate = mask_token_rate
        self.random_token_rate = random_token_rate
        self.special_token_ids = special_token_ids
        self.pad_token_id = pad_token_id
        self.selection = selection
        self.max_predictions = max_predictions
        self.output_mode = output_mode
        self.ignore_index = ignore_index
        self.seed = seed
        self.plan = mlm_masking.MLMMaskingPlan.build(
            vocabulary_size=vocabulary_size,
            mask_token_id=mask_token_id,
            mask_rate=mask_rate,
            mask_token_rate=mask_token_rate,
            random_token_rate=random_token_rate,
            special_token_ids=special_token_ids,
            pad_token_id=pad_token_id,
            selection=selection,
            max_predictions=max_predictions,
        )
        if random_token_rate > 0 and not self.plan.replacement_ids:
            raise ValueError(
                "`random_token_rate` > 0 needs at least one id that is not "
                "special, padding or the mask token to draw from. Received: "
                f"random_token_rate={random_token_rate!r}, "
                f"vocabulary_size={vocabulary_size!r}"
            )
        # A seeded layer draws its masks' seeds from a generator started at
        # `seed`: the same sequence run to run. An unseeded one takes each
        # from the operating system (`fresh_seed`), so masks are fresh on
        # every call, epoch, tf.data service worker and replica.
        self._generator = None
        if seed is not None:
            self._generator = tf.random.Generator.from_seed(seed)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "mask_token_id": self.mask_token_id,
                "mask_rate": self.mask_rate,
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
        return config

    def __call__(self, inputs, training=None, seed=None, **kwargs):
        # On its own (eagerly or in tf.data) the layer masks by default;
        # inside a model it follows Keras's training flag, as Dropout does.
        if training is None and not called_from_another_layer():
            if not any(is_symbolic(x) for x in tf.nest.flatten(inputs)):
                training = True
        return super().__call__(inputs, training=training, seed=seed, **kwargs)

    def call(self, inputs, training=None, seed=None):
        token_ids, rest = self._split_inputs(inputs)
        self._check_token_ids(token_ids)
        if training is None or training is False:
            masked = self._unmasked(token_ids)
        elif training is True:
            masked = self._masked(token_ids, seed)
        else:
            # A symbolic training flag: both branches share one structure.
            masked = tf.cond(
                tf.cast(training, tf.bool),
                lambda: self._masked(token_ids, seed),
                lambda: self._unmasked(token_ids),
            )
        return self._format(rest, token_ids, *masked)

    def compute_output_spec(self, inputs, training=None, seed=None):
        token_ids, rest = self._split_inputs(inputs)

        def like(dtype=token_ids.dtype, shape=token_ids.shape):
            return keras.KerasTensor(shape, dtype=dtype)

        if self.output_mode == "ids":
            return self._merge(rest, like())
        if self.output_mode == "fit":
            return self._merge(rest, like()), like(), like("float32")
        outputs = {"token_ids": like(), "labels": like(), "mask": like("bool")}
        if self.max_predictions is not None:
            width = tuple(token_ids.shape[:-1]) + (self.max_predictions,)
            outputs["mask_positions"] = like("int32", width)
            outputs["mask_ids"] = like(shape=width)
            outputs["mask_weights"] = like("float32", width)
        return {**(rest or {}), **outputs}

    # Inputs and validation.

    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            if "token_ids" not in inputs:
                raise ValueError(
                    "A dict input to DynamicMLMMasking must hold 'token_ids'. "
                    f"Received keys: {sorted(inputs)}"
                )
            rest = {k: v for k, v in inputs.items() if k != "token_ids"}
            return to_tensor(inputs["token_ids"]), rest
        if isinstance(inputs, (tuple, set)):
            raise ValueError(
                "DynamicMLMMasking takes a tensor of token ids or a dict with "
                f"'token_ids'. Received a {type(inputs).__name__}: {inputs!r}"
            )
        return to_tensor(inputs), None

    def _check_token_ids(self, token_ids):
        dtype = keras.backend.standardize_dtype(token_ids.dtype)
        if dtype not in ("int32", "int64"):
            raise ValueError(
                "DynamicMLMMasking needs int32 or int64 token ids. "
                f"Received dtype={dtype} for inputs of shape {token_ids.shape}"
            )
        rank = token_ids.shape.rank
        if rank is not None and rank not in (1, 2):
            raise ValueError(
                "DynamicMLMMasking needs ids of rank 1 `[T]` or 2 `[B, T]`. "
                f"Received rank {rank}, shape {token_ids.shape}"
            )
        if isinstance(token_ids, tf.RaggedTensor) and rank != 2:
            raise ValueError(
                "Ragged ids must be `[B, (T)]`. Received shape "
                f"{token_ids.shape}"
            )

    def _checked_in_range(self, values):
        """`values`, after checking every id lies in `[0, vocabulary_size)`.

        One unsigned max over the ids decides; the message's min and max
        are computed only on failure, so the check costs one reduction.
        """
        unsigned = tf.uint32 if values.dtype == tf.int32 else tf.uint64
        # Negative ids become huge unsigned ones; an empty tensor gives 0.
        in_range = tf.reduce_max(tf.bitcast(values, unsigned)) < tf.cast(
            self.vocabulary_size, unsigned
        )

        def raise_out_of_range():
            check = tf.debugging.Assert(
                False,
                [
                    "DynamicMLMMasking received token ids outside "
                    f"[0, vocabulary_size={self.vocabulary_size}): min id",
                    tf.reduce_min(values),
                    "max id",
                    tf.reduce_max(values),
                ],
                summarize=1,
            )
            with tf.control_dependencies([check]):
                return tf.identity(values)

        return tf.cond(in_range, lambda: values, raise_out_of_range)

    # Masking.

    def _seed(self, seed):
        if seed is None:
            if self._generator is None:
                return fresh_seed()
            return self._generator.make_seeds(1)[:, 0]
        seed = tf.convert_to_tensor(seed)
        if seed.dtype not in (tf.int32, tf.int64):
            seed = tf.cast(seed, tf.int64)
        return tf.reshape(seed, [2])

    def _masked(self, token_ids, seed):
        """`(corrupted, selected, targets)`, `targets` None or a triple."""
        seed = self._seed(seed)
        token_ids = _map_values(self._checked_in_range, token_ids)
        per_sequence = self.selection == "exact" or self.max_predictions is not None
        if isinstance(token_ids, tf.RaggedTensor):
            return self._masked_ragged(token_ids, seed, per_sequence)
        if not per_sequence:
            corrupted, selected = mlm_masking.select_and_corrupt(token_ids, seed, self.plan)
            return corrupted, selected, None
        rank_one = token_ids.shape.rank == 1
        batch = token_ids[None, :] if rank_one else token_ids
        corrupted, selected = mlm_masking.select_and_corrupt(batch, seed, self.plan)
        targets = self._targets(batch, selected)
        if rank_one:
            corrupted, selected = corrupted[0], selected[0]
            targets = None if targets is None else tuple(t[0] for t in targets)
        return corrupted, selected, targets

    def _masked_ragged(self, token_ids, seed, per_sequence):
        if not per_sequence:
            corrupted, selected = mlm_masking.select_and_corrupt(
                token_ids.flat_values, seed, self.plan
            )
            return (
                token_ids.with_flat_values(corrupted),
                token_ids.with_flat_values(selected),
                None,
            )
        lengths = token_ids.row_lengths()
        dense = token_ids.to_tensor()
        valid = tf.sequence_mask(lengths, tf.shape(dense)[1])
        corrupted, selected = mlm_masking.select_and_corrupt(
            dense, seed, self.plan, valid=valid
        )
        targets = self._targets(dense, selected)
        return (
            tf.RaggedTensor.from_tensor(corrupted, lengths=lengths),
            tf.RaggedTensor.from_tensor(selected, lengths=lengths),
            targets,
        )

    def _targets(self, token_ids, selected):
        if self.max_predictions is None or self.output_mode != "dict":
            return None
        return mlm_masking.prediction_targets(token_ids, selected, self.max_predictions)

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
        if self.max_predictions is not None and self.output_mode == "dict":
            width = tf.concat([dense_shape[:-1], [self.max_predictions]], 0)
            targets = (
                tf.zeros(width, tf.int32),
                tf.zeros(width, token_ids.dtype),
                tf.zeros(width, tf.float32),
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
        if self.output_mode == "fit":
            weights = _map_values(lambda s: tf.cast(s, tf.float32), selected)
            return self._merge(rest, corrupted), original, weights
        ignore = tf.constant(self.ignore_index, original.dtype)
        labels = _map_values(
            lambda ids: tf.where(_values(selected), ids, ignore), original
        )
        outputs = {"token_ids": corrupted, "labels": labels, "mask": selected}
        if targets is not None:
            positions, ids, weights = targets
            outputs.update(
                {"mask_positions": positions, "mask_ids": ids, "mask_weights": weights}
            )
        return {**(rest or {}), **outputs}


def _values(tensor):
    """The flat values of a ragged tensor, or the dense tensor itself."""
    if isinstance(tensor, tf.RaggedTensor):
        return tensor.flat_values
    return tensor


def _map_values(fn, tensor):
    """Applies `fn` to a dense tensor or to a ragged tensor's flat values."""
    if isinstance(tensor, tf.RaggedTensor):
        return tensor.with_flat_values(fn(tensor.flat_values))
    return fn(tensor)
