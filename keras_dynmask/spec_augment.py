"""`SpecAugment`: fresh time and frequency masks on every batch of spectrograms."""

import keras
import numpy as np

from keras_dynmask import validation
from keras_dynmask.lazy_tensorflow import tf
from keras_dynmask.kernels import band_masks
from keras_dynmask.kernels import op_set
from keras_dynmask.kernels import seeds
from keras_dynmask.masking_layer import MaskingLayer
from keras_dynmask.masking_layer import backend_values
from keras_dynmask.masking_layer import to_tensor

MEAN = "mean"


@keras.saving.register_keras_serializable(package="keras_dynmask")
class SpecAugment(MaskingLayer):
    """Masks random time and frequency bands of spectrograms (SpecAugment).

    Per example, `num_time_masks` bands of consecutive frames and
    `num_freq_masks` bands of consecutive frequency bins (across all
    frames) are set to `mask_value` (Park et al., 2019). A time band has an
    integer width uniform on `{0, ..., W}` with `W = floor(min(
    time_mask_param, max_time_ratio * T))` (the paper's adaptive cap; the
    ratio is read as the decimal it is written as, so 0.7 of 10 frames is
    7) and a start uniform on `{0, ..., T - width}`; a frequency band
    likewise with `W = min(freq_mask_param, F)`. Bands may overlap, and
    every draw is independent per example. `T` is the spectrogram's length
    as given, padding included (torchaudio's rule), unless `lengths` gives
    each example's real frames: then `T` is that example's own length, time
    bands lie inside its real frames, frequency bands cover only those,
    `"mean"` is their mean, and padded frames stay as they are.

    Like `Dropout`, it masks only when training: called on its own (eagerly
    or in a `tf.data` map) it masks unless `training=False`; inside a model
    only when Keras trains (`fit`), never in `predict`, `evaluate` or an
    exported SavedModel. It runs in `tf.data` with TensorFlow ops whatever
    the backend (any number of frames, a `None` length included), inside
    JAX, PyTorch and TensorFlow models (under jit and XLA), and in
    SavedModels. Randomness follows `DynamicMLMMasking`: unseeded, fresh
    masks every call and epoch; a call-time `seed` (int `[2]`) makes the
    output a pure function of `(spectrogram, seed)`; a constructor `seed`
    makes the sequence of masks reproducible.

    Args:
        num_time_masks: int >= 0, time bands per example.
        time_mask_param: int >= 0, the widest time band (the paper's `T`).
        max_time_ratio: float in `(0, 1]`, the widest time band as a share
            of the frames (the paper's `p`).
        num_freq_masks: int >= 0, frequency bands per example.
        freq_mask_param: int >= 0, the widest frequency band (the paper's
            `F`).
        mask_value: a float, or `"mean"` for the mean of that example's
            spectrogram (over all its frames and bins, before masking).
        seed: `None` or int, seeds the layer's sequence of masks.
        **kwargs: base layer arguments, such as `name`.

    Call arguments:
        spectrogram: a float tensor `[B, T, F]` (or one spectrogram
            `[T, F]`): frames by frequency bins, e.g. log-mel features.
        training: `False` masks nothing. `None` masks when the layer is
            called on its own, and inside a model only when Keras trains.
        seed: optional shape-`[2]` int tensor; the output is then a pure
            function of `(spectrogram, seed)`.
        lengths: optional integer `[B]` (`[]` for one spectrogram): each
            example's number of real frames, in `[0, T]`. Outside it: a
            `ValueError` eagerly, a failed assertion in a TF graph; clipped
            where no check runs (XLA, inside JAX and PyTorch models).

    Returns:
        The masked spectrogram: same shape and dtype.

    Example:

    >>> import numpy as np
    >>> augment = SpecAugment(num_time_masks=1, time_mask_param=3,
    ...                       num_freq_masks=1, freq_mask_param=2)
    >>> spectrogram = np.ones((2, 10, 6), "float32")
    >>> masked = np.asarray(augment(spectrogram, seed=[1, 2]))
    >>> masked.shape, masked.dtype
    ((2, 10, 6), dtype('float32'))
    >>> bool(((masked == 0) | (masked == 1)).all())
    True
    >>> np.asarray(augment(spectrogram, training=False)).min()
    np.float32(1.0)
    """

    masks_when_called_alone = True

    def __init__(
        self,
        num_time_masks: int = 2,
        time_mask_param: int = 40,
        max_time_ratio: float = 1.0,
        num_freq_masks: int = 2,
        freq_mask_param: int = 27,
        mask_value: "float | str" = 0.0,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check = validation
        self.num_time_masks = check.as_int("num_time_masks", num_time_masks, 0)
        self.time_mask_param = check.as_int("time_mask_param", time_mask_param, 0)
        self.max_time_ratio = check.as_float(
            "max_time_ratio", max_time_ratio, 0, 1, low_open=True, as_written=True
        )
        self.num_freq_masks = check.as_int("num_freq_masks", num_freq_masks, 0)
        self.freq_mask_param = check.as_int("freq_mask_param", freq_mask_param, 0)
        if isinstance(mask_value, str):
            self.mask_value = check.as_choice("mask_value", mask_value, (MEAN,))
        else:
            try:
                self.mask_value = check.as_float("mask_value", mask_value)
            except ValueError:
                raise ValueError(
                    f"`mask_value` must be a float or {MEAN!r}. "
                    f"Received: mask_value={mask_value!r}"
                ) from None
        self.seed = check.as_seed(seed)
        self._generator = seeds.layer_generator(self.seed)
        self._backend_seeds = seeds.backend_seed_generator(self.seed)
        # An input's Keras mask (e.g. of padded frames) passes through.
        self.supports_masking = True

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_time_masks": self.num_time_masks,
                "time_mask_param": self.time_mask_param,
                "max_time_ratio": self.max_time_ratio,
                "num_freq_masks": self.num_freq_masks,
                "freq_mask_param": self.freq_mask_param,
                "mask_value": self.mask_value,
                "seed": self.seed,
            }
        )
        return config

    def call(
        self,
        spectrogram: "tf.Tensor",
        training: "bool | tf.Tensor | None" = None,
        seed: "tf.Tensor | None" = None,
        lengths: "tf.Tensor | None" = None,
    ) -> "tf.Tensor":
        ops, spectrogram = backend_values(spectrogram)
        self._check_spectrogram(spectrogram)
        if lengths is not None:
            lengths = ops.convert(lengths) if ops is op_set.KERAS else to_tensor(lengths)
            self._check_lengths(spectrogram, lengths)
        if training is None or training is False:
            return spectrogram
        if training is True:
            return self._masked(ops, spectrogram, seed, lengths)
        # A symbolic training flag (TensorFlow): both branches, one shape.
        return tf.cond(
            tf.cast(training, tf.bool),
            lambda: self._masked(ops, spectrogram, seed, lengths),
            lambda: tf.identity(spectrogram),
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, spectrogram, training=None, seed=None, lengths=None):
        self._check_spectrogram(spectrogram)
        if lengths is not None:
            self._check_lengths(spectrogram, lengths)
        return keras.KerasTensor(spectrogram.shape, dtype=spectrogram.dtype)

    def _seed(self, ops, seed):
        if ops is op_set.KERAS:
            return seeds.backend_call_seed(seed, self._backend_seeds)
        return seeds.call_seed(seed, self._generator)

    def _masked(self, ops, spectrogram, seed, lengths=None):
        single = validation.static_rank(spectrogram) == 2
        batch = spectrogram[None] if single else spectrogram
        batch_size, num_frames, num_bins = ops.shape(batch)
        checks = []
        if lengths is not None:
            lengths = ops.reshape(lengths, (-1,))
            if ops is op_set.KERAS:
                if not self.called_inside_model:
                    validation.check_length_values(lengths, num_frames)
            else:
                checks = validation.length_checks(lengths, batch_size, num_frames)
            with validation.dependencies(checks):
                length = ops.cast(num_frames, ops.dtype_name(lengths))
                lengths = ops.cast(ops.clip(lengths, 0, length), "int32")
        time_mask, freq_mask = band_masks.spectrogram_band_masks(
            ops,
            batch_size,
            num_frames,
            num_bins,
            self._seed(ops, seed),
            num_time_masks=self.num_time_masks,
            time_mask_param=self.time_mask_param,
            max_time_ratio=self.max_time_ratio,
            num_freq_masks=self.num_freq_masks,
            freq_mask_param=self.freq_mask_param,
            lengths=lengths,
        )
        freq_mask = freq_mask[:, None, :]
        if lengths is not None:  # padded frames are left as they are
            real = ops.arange(num_frames)[None, :] < lengths[:, None]
            freq_mask = freq_mask & real[:, :, None]
        masked = time_mask[:, :, None] | freq_mask
        dtype = ops.dtype_name(batch)
        if self.mask_value == MEAN:
            # Accumulated in float32 (exact enough for float16 inputs too).
            values = ops.cast(batch, "float32")
            if lengths is None:
                count = ops.cast(num_frames * num_bins, "float32")
            else:  # the mean of the real frames
                values = ops.where(real[:, :, None], values, 0.0)
                count = ops.cast(ops.maximum(lengths, 1) * num_bins, "float32")
            mean = ops.sum(values, axis=(1, 2)) / count
            fill = ops.cast(ops.reshape(mean, (-1, 1, 1)), dtype)
        else:
            fill = ops.cast(ops.convert(np.float32(self.mask_value)), dtype)
        out = ops.where(masked, fill, batch)
        return out[0] if single else out

    def _check_lengths(self, spectrogram, lengths):
        rank = validation.static_rank(spectrogram)
        if rank == 2 and validation.static_rank(lengths) == 0:
            batch = None  # one spectrogram [T, F], one length []
            lengths = keras.KerasTensor((1,), dtype=validation.dtype_name(lengths))
        else:
            batch = 1 if rank == 2 else tuple(spectrogram.shape)[0]
        validation.check_lengths_tensor("SpecAugment", lengths, batch)

    def _check_spectrogram(self, spectrogram):
        if not hasattr(spectrogram, "dtype") or not hasattr(spectrogram, "shape"):
            raise ValueError(
                "SpecAugment takes a float tensor [B, T, F] or [T, F]. "
                f"Received: spectrogram={spectrogram!r}"
            )
        dtype = validation.dtype_name(spectrogram)
        if "float" not in dtype:
            raise ValueError(
                "SpecAugment needs a float spectrogram (e.g. float32 log-mel "
                f"features). Received: spectrogram of dtype {dtype} and shape "
                f"{validation.shape_text(spectrogram)}"
            )
        if validation.is_ragged(spectrogram):
            raise ValueError(
                "SpecAugment needs a dense spectrogram [B, T, F]; pad ragged "
                f"frames first. Received: a ragged spectrogram of shape "
                f"{validation.shape_text(spectrogram)}"
            )
        rank = validation.static_rank(spectrogram)
        if rank not in (2, 3):
            shown = "unknown" if rank is None else rank
            raise ValueError(
                "SpecAugment needs a spectrogram of rank 3 [B, T, F] or rank 2 "
                f"[T, F] (known when the layer is traced). Received: rank "
                f"{shown}, shape {validation.shape_text(spectrogram)}"
            )
