"""`SpanMasking`: wav2vec 2.0's masking of feature-frame spans, fresh every call."""

import keras
import numpy as np
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import validation
from keras_dynmask.kernels import frame_spans
from keras_dynmask.kernels import op_set
from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import seeds
from keras_dynmask.masking_layer import MaskingLayer
from keras_dynmask.masking_layer import build_once
from keras_dynmask.masking_layer import called_from_another_layer
from keras_dynmask.masking_layer import is_symbolic
from keras_dynmask.masking_layer import to_tensor

LEARNED = "learned"


@keras.saving.register_keras_serializable(package="keras_dynmask")
class SpanMasking(MaskingLayer):
    """Masks spans of feature frames as wav2vec 2.0 and HuBERT pre-train.

    Per sequence of `L` real frames the layer masks `n = int(mask_prob * L /
    mask_length + u)` spans (`u` uniform in `[0, 1)`, drawn afresh per
    sequence), at least `min_masks`, of `mask_length` frames each. With
    `allow_overlap=True` the span starts are drawn without replacement
    among the `L - mask_length + 1` starts that keep a span inside the real
    frames (all of them when fewer exist than asked), so spans may overlap
    and about `mask_prob` of the frames end up masked, somewhat less where
    spans overlap. With `allow_overlap=False` the spans are disjoint, `n` is
    capped at `floor(L / mask_length)`, and they cover exactly `n *
    mask_length` frames (a uniformly random arrangement). A sequence shorter
    than `mask_length` (also when every sequence is) gets no span: nothing
    is masked there, whatever `min_masks` says. Padding is never masked.

    Masked frames become `mask_value`: a trainable vector of size `D` (the
    mask embedding of wav2vec 2.0, initialised uniform in `[0, 1)` as
    there) with `"learned"`, or a fixed float. With `feature_mask_prob > 0`
    the same rule (without `min_masks`) also picks spans of
    `feature_mask_length` columns of `D` per sequence, zeroed in every frame
    of that sequence, after the time masking; the returned `mask` marks
    time-masked frames only.

    Padding: `padding_mask` `[B, T]` is True at real frames (what
    `PaddingMask` gives), or `lengths` `[B]` counts the real frames of rows
    padded at the end. Spans are counted along a row's real frames in
    order: with padding at the end (wav2vec 2.0's layout) they are runs of
    consecutive frames; with padding elsewhere a span skips the padded
    frames, which are never masked.

    Where it runs: in a Keras model on any backend (masking, like `Dropout`,
    only when Keras trains: never in `predict`, `evaluate`, `model(x)` or an
    exported SavedModel), called on its own (eagerly it masks unless
    `training=False`), and in a `tf.data` map with TensorFlow ops whatever
    the backend. `"learned"` is a weight of the model that trains it: called
    eagerly on its own the layer puts the vector's current value; in a
    `tf.data` map or any other `tf.function` outside a model it raises a
    `ValueError` (a pipeline would not train the weight): give the
    pipeline's layer a float `mask_value`, e.g. `0.0`.

    Randomness, as for `DynamicMLMMasking`: unseeded, fresh masks every call
    and every epoch; a call-time `seed` (int `[2]`) makes the output a pure
    function of `(features, padding_mask, seed)`; a constructor `seed`
    makes the sequence of masks reproducible (inside JAX and PyTorch models
    through a `keras.random.SeedGenerator`, fresh every step under jit).
    The counts use float32 arithmetic.

    Args:
        mask_prob: float in `(0, 1]`, the share of real frames the rule
            aims to mask (before overlaps).
        mask_length: int >= 1, frames per span.
        min_masks: int >= 0, the fewest spans of a sequence that has room.
        allow_overlap: bool, whether spans may overlap.
        feature_mask_prob: float in `[0, 1]`, the same for columns of `D`
            (0 masks none).
        feature_mask_length: int >= 1, columns per feature span; with
            `feature_mask_prob > 0` it must not exceed `D`.
        mask_value: `"learned"` or a float.
        seed: `None` or int, seeds the layer's sequence of masks.
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        features: float tensor `[B, T, D]` (TF, NumPy, JAX or PyTorch).
        padding_mask: optional bool (or 0/1 integer) `[B, T]`, True at real
            frames.
        training: `False` masks nothing. `None` masks when the layer is
            called on its own, and inside a model only when Keras trains.
        seed: optional shape-`[2]` int tensor; the output is then a pure
            function of the inputs and `seed`.
        lengths: optional int `[B]`, real frames per row, padding at the
            end (instead of `padding_mask`), each in `[0, T]`. Outside it:
            a `ValueError` eagerly, a failed assertion in a TF graph;
            clipped where no check runs (XLA, inside JAX and PyTorch
            models).
        mask: the Keras mask of `features` (after `keras.layers.Masking`,
            say), passed by Keras: used as `padding_mask` when neither
            `padding_mask` nor `lengths` is given. `masked_features`
            carries it on.

    Returns:
        A tuple `(masked_features, mask)`: `masked_features` of the shape
        and dtype of `features`, and `mask`, bool `[B, T]`, True at the
        time-masked frames (where a masked-prediction loss is taken).

    Example:

    >>> import numpy as np
    >>> features = np.ones((2, 40, 8), "float32")
    >>> padding_mask = np.arange(40) < np.array([[40], [20]])
    >>> masker = SpanMasking(mask_prob=0.5, mask_length=5, allow_overlap=False,
    ...                      mask_value=0.0)
    >>> masked, mask = masker(features, padding_mask=padding_mask, seed=[1, 2])
    >>> masked, mask = np.asarray(masked), np.asarray(mask)  # any backend's tensors
    >>> mask.shape, masked.shape
    ((2, 40), (2, 40, 8))
    >>> mask.sum(axis=1).tolist()  # 0.5 * L / 5: 4 and 2 disjoint spans
    [20, 10]
    >>> bool(mask[1, 20:].any())  # padding is never masked
    False
    >>> bool(np.all(masked[mask] == 0.0))
    True
    """

    masks_when_called_alone = True

    def __init__(
        self,
        mask_prob: float = 0.05,
        mask_length: int = 10,
        min_masks: int = 2,
        allow_overlap: bool = True,
        feature_mask_prob: float = 0.0,
        feature_mask_length: int = 10,
        mask_value: "str | float" = LEARNED,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check = validation
        self.mask_prob = check.as_float("mask_prob", mask_prob, 0, 1, low_open=True)
        self.mask_length = check.as_int("mask_length", mask_length, 1)
        self.min_masks = check.as_int("min_masks", min_masks, 0)
        self.allow_overlap = _as_bool("allow_overlap", allow_overlap)
        self.feature_mask_prob = check.as_float("feature_mask_prob", feature_mask_prob, 0, 1)
        self.feature_mask_length = check.as_int("feature_mask_length", feature_mask_length, 1)
        self.mask_value = _as_mask_value(mask_value)
        self.seed = check.as_seed(seed)
        self.mask_vector = None
        self._features_shape = None
        # Seeds as in DynamicMLMMasking: a TF generator (or the operating
        # system) for TensorFlow ops, a Keras SeedGenerator in JAX and
        # PyTorch models.
        self._generator = seeds.layer_generator(self.seed)
        self._backend_seeds = seeds.backend_seed_generator(self.seed)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mask_prob": self.mask_prob,
                "mask_length": self.mask_length,
                "min_masks": self.min_masks,
                "allow_overlap": self.allow_overlap,
                "feature_mask_prob": self.feature_mask_prob,
                "feature_mask_length": self.feature_mask_length,
                "mask_value": self.mask_value,
                "seed": self.seed,
            }
        )
        return config

    def build(self, features_shape):
        """Makes the mask vector (`"learned"`), `D` long."""
        features_shape = tuple(features_shape)
        self._check_rank("features", len(features_shape), 3, features_shape)
        depth = features_shape[-1]
        self._check_depth(depth)
        if self.mask_value == LEARNED and self.mask_vector is None:
            if depth is None:
                raise ValueError(
                    "SpanMasking with mask_value='learned' needs the feature "
                    "axis D of `features` known, to size the mask vector. "
                    f"Received: features of shape {features_shape}"
                )
            self.mask_vector = self.add_weight(
                shape=(int(depth),),
                initializer=keras.initializers.RandomUniform(0.0, 1.0),
                trainable=True,
                name="mask_vector",
            )
        self._features_shape = features_shape
        self.built = True

    def get_build_config(self):
        if self._features_shape is None:
            return None
        return {"features_shape": list(self._features_shape)}

    def build_from_config(self, config):
        if config and config.get("features_shape") is not None:
            self.build(config["features_shape"])

    def __call__(self, features, padding_mask=None, training=None, seed=None, lengths=None, **kwargs):
        features = to_tensor(features)
        symbolic = is_symbolic(features)
        on_its_own = not called_from_another_layer()
        if (
            self.mask_value == LEARNED
            and on_its_own
            and not symbolic
            and training is not False
            and op_set.in_tensorflow_graph()
        ):
            raise ValueError(
                "SpanMasking(mask_value='learned') puts a trainable vector of "
                "its model at masked frames; called on its own in a tf.data "
                "map or a tf.function, no model would train it. Give this "
                "layer a float, e.g. SpanMasking(..., mask_value=0.0), or "
                "mask inside the model. Received: mask_value='learned'"
            )
        if not self.built:
            shape = tuple(features.shape) if hasattr(features, "shape") else ()
            build_once(self, lambda: self.build(shape))
        return super().__call__(
            features, padding_mask=padding_mask, training=training, seed=seed,
            lengths=lengths, **kwargs,
        )

    def call(
        self,
        features: "tf.Tensor",
        padding_mask: "tf.Tensor | None" = None,
        training: "bool | tf.Tensor | None" = None,
        seed: "tf.Tensor | None" = None,
        lengths: "tf.Tensor | None" = None,
        mask: "tf.Tensor | None" = None,
    ) -> "tuple[tf.Tensor, tf.Tensor]":
        if padding_mask is None and lengths is None:
            padding_mask = mask  # the Keras mask of `features` (after `Masking`)
        ops = op_set.for_values(features, padding_mask, lengths)
        features = self._converted(ops, features)
        padding_mask = None if padding_mask is None else self._converted(ops, padding_mask)
        lengths = None if lengths is None else self._converted(ops, lengths)
        self._check_inputs(features, padding_mask, lengths)
        padding_mask = self._padding_mask(ops, features, padding_mask, lengths)
        if ops is not op_set.KERAS and padding_mask is not None:
            # Dims known only at run time (tf.data, a SavedModel): checked there.
            checks = validation.require(
                tf.reduce_all(tf.equal(tf.shape(padding_mask), tf.shape(features)[:2])),
                "SpanMasking needs `padding_mask` (or `lengths`) of shape [B, T] "
                "matching `features` [B, T, D]",
                padding_mask_shape=tf.shape(padding_mask),
                features_shape=tf.shape(features),
            ) if not _fully_known(padding_mask, features) else []
            with tf.control_dependencies(checks):
                padding_mask = tf.identity(padding_mask) if checks else padding_mask
        if ops is op_set.KERAS:
            if training:
                return self._masked(ops, features, padding_mask, seeds.backend_call_seed(seed, self._backend_seeds))
            return self._unmasked(ops, features)
        if training is None or training is False:
            return self._unmasked(ops, features)
        if training is True:
            return self._masked(ops, features, padding_mask, self._tensorflow_seed(seed))
        # A symbolic training flag (TensorFlow): both branches, one structure.
        return tf.cond(
            tf.cast(training, tf.bool),
            lambda: self._masked(ops, features, padding_mask, self._tensorflow_seed(seed)),
            lambda: self._unmasked(ops, features),
        )

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        return shape, shape[:2]

    def compute_output_spec(
        self, features, padding_mask=None, training=None, seed=None, lengths=None, mask=None
    ):
        self._check_inputs(features, padding_mask, lengths)
        return (
            keras.KerasTensor(tuple(features.shape), dtype=features.dtype),
            keras.KerasTensor(tuple(features.shape)[:2], dtype="bool"),
        )

    def compute_mask(self, features, previous_mask=None):
        # `masked_features` keeps the Keras mask of `features`.
        return None if previous_mask is None else (previous_mask, None)

    # Masking.

    def _masked(self, ops, features, padding_mask, seed):
        time_rule = dict(
            mask_prob=self.mask_prob, mask_length=self.mask_length,
            min_masks=self.min_masks, allow_overlap=self.allow_overlap,
        )
        feature_rule = None
        if self.feature_mask_prob > 0:
            feature_rule = dict(
                mask_prob=self.feature_mask_prob, mask_length=self.feature_mask_length,
                min_masks=0, allow_overlap=self.allow_overlap,
            )
        return frame_spans.mask_frames(
            ops, features, padding_mask, seed, self._mask_value(ops), time_rule, feature_rule
        )

    def _unmasked(self, ops, features):
        return features, ops.zeros(ops.shape(features)[:2], "bool")

    def _mask_value(self, ops):
        if self.mask_value != LEARNED:
            return self.mask_value
        if ops is op_set.KERAS or keras.backend.backend() == "tensorflow":
            return self.mask_vector.value
        # TensorFlow ops under another backend: only eagerly on a TF tensor
        # (tf.data and tf.function refuse "learned", see `__call__`).
        return tf.constant(np.asarray(keras.ops.convert_to_numpy(self.mask_vector.value)))

    def _tensorflow_seed(self, seed):
        # Seeds in [0, 2**32): XLA draws what TensorFlow's kernels draw.
        return random_bits.philox_seed(seeds.call_seed(seed, self._generator))

    # Inputs and validation.

    @staticmethod
    def _converted(ops, value):
        if ops is op_set.KERAS:
            return keras.ops.convert_to_tensor(value)
        if op_set.is_tensorflow_value(value):
            return value
        if isinstance(value, (np.ndarray, list, tuple, bool, int, float, np.generic)):
            return tf.convert_to_tensor(value)
        return tf.convert_to_tensor(np.asarray(keras.ops.convert_to_numpy(value)))

    def _padding_mask(self, ops, features, padding_mask, lengths):
        if lengths is not None:
            batch_size, width = ops.shape(features)[0], ops.shape(features)[1]
            checks = []
            if ops is op_set.KERAS:
                if not self.called_inside_model:
                    validation.check_length_values(lengths, width)
            else:
                checks = validation.length_checks(lengths, batch_size, width)
            with validation.dependencies(checks):
                return ops.arange(width)[None, :] < ops.cast(lengths, "int32")[:, None]
        if padding_mask is None:
            return None
        if ops.dtype_name(padding_mask) != "bool":
            return ops.not_equal(padding_mask, ops.zeros((), ops.dtype_name(padding_mask)))
        return padding_mask

    @staticmethod
    def _check_rank(name, rank, expected, shape):
        if rank is not None and rank != expected:
            layout = "[B, T, D]" if expected == 3 else ("[B, T]" if expected == 2 else "[B]")
            raise ValueError(
                f"SpanMasking needs `{name}` of rank {expected}, {layout}. "
                f"Received: {name} of rank {rank}, shape {tuple(shape)}"
            )

    def _check_depth(self, depth):
        if self.feature_mask_prob > 0 and depth is not None and self.feature_mask_length > depth:
            raise ValueError(
                "`feature_mask_length` must not exceed the feature axis D of "
                "`features` (no column span would fit). Received: "
                f"feature_mask_length={self.feature_mask_length}, D={depth}"
            )

    def _check_inputs(self, features, padding_mask, lengths):
        if not hasattr(features, "dtype") or not hasattr(features, "shape"):
            raise ValueError(
                f"SpanMasking takes a float tensor `features` [B, T, D]. Received: features={features!r}"
            )
        if validation.is_ragged(features):
            raise ValueError(
                "SpanMasking takes dense `features` [B, T, D] with a `padding_mask`; "
                "pad a ragged batch first (`features.to_tensor()`). Received: a "
                f"ragged features of shape {validation.shape_text(features)}"
            )
        dtype = validation.dtype_name(features)
        if "float" not in dtype:
            raise ValueError(
                "SpanMasking needs float `features` [B, T, D]. Received: features "
                f"of dtype {dtype} and shape {validation.shape_text(features)}"
            )
        shape = _dims(features)
        self._check_rank("features", None if shape is None else len(shape), 3, shape or ())
        if shape is not None:
            self._check_depth(shape[2])
        if padding_mask is not None and lengths is not None:
            raise ValueError(
                "SpanMasking takes `padding_mask` or `lengths`, not both. "
                f"Received: padding_mask of shape {validation.shape_text(padding_mask)} "
                f"and lengths of shape {validation.shape_text(lengths)}"
            )
        for name, value, rank in (("padding_mask", padding_mask, 2), ("lengths", lengths, 1)):
            if value is None:
                continue
            dims = _dims(value)
            self._check_rank(name, None if dims is None else len(dims), rank, dims or ())
            if dims is None or shape is None:
                continue
            if any(a is not None and b is not None and a != b for a, b in zip(dims, shape)):
                layout = "[B, T]" if rank == 2 else "[B]"
                raise ValueError(
                    f"SpanMasking needs `{name}` of shape {layout} matching `features` "
                    f"{list(shape)}. Received: {name} of shape {list(dims)}"
                )
        if lengths is not None:
            validation.check_lengths_tensor("SpanMasking", lengths, None if shape is None else shape[0])


def _dims(tensor):
    """Static dims as a tuple (None where unknown), or None for an unknown rank."""
    shape = tensor.shape
    if isinstance(shape, tf.TensorShape):
        return None if shape.rank is None else tuple(shape.as_list())
    if shape is None:
        return None
    # A JAX symbolic dim (a functional model traced with a None batch) is unknown.
    return tuple(int(d) if isinstance(d, (int, np.integer)) else None for d in shape)


def _fully_known(*tensors):
    dims = [_dims(t) for t in tensors]
    return all(d is not None and None not in d for d in dims)


def _as_bool(name, value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")


def _as_mask_value(value):
    if isinstance(value, str):
        if value == LEARNED:
            return value
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return validation.as_float("mask_value", value)
    raise ValueError(
        "`mask_value` must be 'learned' or a float. "
        f"Received: mask_value={value!r}"
    )
