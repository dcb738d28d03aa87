"""`MaskedLMModel`: masked-LM training with the masking inside the model."""

import keras
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import validation
from keras_dynmask.dynamic_mlm_masking import DynamicMLMMasking
from keras_dynmask.kernels import op_set
from keras_dynmask.kernels import seeds


def masked_lm_loss():
    """Cross-entropy over logits, averaged over the selected positions only.

    `reduction="mean_with_sample_weight"` divides the weighted sum by the
    sum of the weights, so unselected positions (weight 0) contribute
    nothing, and the loss does not shrink with the mask rate.
    """
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight"
    )


@keras.saving.register_keras_serializable(package="keras_dynmask")
class MaskedLMModel(keras.Model):
    """Wraps a token-level model so `fit` trains it as a masked LM.

    Each training step masks the batch with `masking` (a
    `DynamicMLMMasking` in `output_mode="fit"`) on the device, feeds the
    corrupted ids to `backbone`, and takes the loss at the selected
    positions only (the masking's sample weights). `fit(ids)` needs no
    labels. Evaluation without labels masks each batch with a fixed seed
    (`evaluation_seed`, mixed with the batch's content), so the held-out
    masking is identical from epoch to epoch. Batches that already come as
    `(x, y, sample_weight)` (e.g. from `ds.map(masking)`) are used as they
    are. Calling or exporting the model runs `backbone` alone, unmasked.

    Args:
        backbone: a Keras model or layer mapping ids `[B, T]` to logits
            `[B, T, vocabulary_size]`.
        masking: a `DynamicMLMMasking` with `output_mode="fit"`.
        evaluation_seed: int, seeds the fixed evaluation masking.
        **kwargs: base `keras.Model` arguments such as `name`.

    Call arguments:
        inputs: token ids for `backbone`.
        training: passed to `backbone`.

    Returns:
        The backbone's logits.

    Example:

    >>> import keras, numpy as np
    >>> backbone = keras.Sequential([
    ...     keras.Input((None,), dtype="int32"),
    ...     keras.layers.Embedding(50, 8), keras.layers.Dense(50)])
    >>> model = MaskedLMModel(backbone, DynamicMLMMasking(
    ...     vocabulary_size=50, mask_token_id=4, output_mode="fit"))
    >>> model.compile(optimizer="adam")
    >>> ids = np.random.randint(5, 50, size=(16, 12)).astype("int32")
    >>> history = model.fit(ids, epochs=1, batch_size=8, verbose=0)
    >>> model.predict(ids[:2], verbose=0).shape
    (2, 12, 50)
    """

    def __init__(
        self,
        backbone: "keras.Model | keras.layers.Layer",
        masking: "DynamicMLMMasking",
        evaluation_seed: int = 1234,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(masking, DynamicMLMMasking) or masking.output_mode != "fit":
            raise ValueError(
                "`masking` must be a DynamicMLMMasking with output_mode='fit'. "
                f"Received: masking={masking!r}"
            )
        evaluation_seed = validation.as_int("evaluation_seed", evaluation_seed)
        self.backbone = backbone
        self.masking = masking
        self.evaluation_seed = evaluation_seed
        self._masking_in_call = None  # "train" / "evaluate" while a step masks

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "masking": keras.saving.serialize_keras_object(self.masking),
                "evaluation_seed": self.evaluation_seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        config["masking"] = keras.saving.deserialize_keras_object(config["masking"])
        return cls(**config)

    def compile(self, optimizer="adam", loss=None, weighted_metrics=None, **kwargs):
        """Like `keras.Model.compile`, defaulting to the masked-LM loss.

        Defaults: `loss=masked_lm_loss()`, `weighted_metrics=[accuracy]`
        (accuracy at the selected positions).
        """
        if loss is None:
            loss = masked_lm_loss()
        if weighted_metrics is None:
            weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(
            optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics, **kwargs
        )

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Like `keras.Model.export`; the signature takes integer ids by default.

        Keras would infer the serving signature from the build shapes with
        a float dtype; ids are integers. By default the backbone's own input
        specs are used (when it has `inputs`), else int32 `[None, None]`.
        """
        if input_signature is None:
            inputs = getattr(self.backbone, "inputs", None) or []
            specs = [
                tf.TensorSpec(tuple(x.shape), x.dtype, name="token_ids" if len(inputs) == 1 else None)
                for x in inputs
            ]
            input_signature = specs or [tf.TensorSpec((None, None), tf.int32, name="token_ids")]
        return super().export(
            filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs
        )

    def call(self, inputs: "tf.Tensor", training: bool | None = None) -> "tf.Tensor":
        # `train_step` / `test_step` set `_masking_in_call` while Keras traces (or,
        # on PyTorch, runs) a step on a batch without labels: the masking
        # then runs here, inside the model's call, so that on every backend
        # Keras carries the masking's seed state (stateless under JAX's
        # jit). The step's output is a dict that `compute_loss` and
        # `compute_metrics` unpack; `predict`, `model(x)` and exports get the
        # backbone's logits.
        if self._masking_in_call is None:
            return self.backbone(inputs, training=training)
        if self._masking_in_call == "train":
            x, labels, weights = self.masking(inputs, training=True)
        else:
            x, labels, weights = self._evaluation_masking(inputs)
        logits = self.backbone(x, training=training)
        return {"logits": logits, "labels": labels, "weights": weights}

    def _evaluation_masking(self, inputs):
        """The held-out masking: seeded by the batch's content, so identical
        from epoch to epoch; a scheduled rate is read, not advanced."""
        token_ids = inputs["token_ids"] if isinstance(inputs, dict) else inputs
        if op_set.for_values(token_ids) is op_set.KERAS:
            seed = seeds.backend_content_seed(self.evaluation_seed, token_ids)
            return self.masking(inputs, training=True, seed=seed)
        seed = seeds.content_seed(self.evaluation_seed, token_ids)
        step = self.masking.schedule_step
        extra = {} if step is None else {"step": tf.convert_to_tensor(step)}
        return self.masking(inputs, training=True, seed=seed, **extra)

    def make_train_function(self, force=False):
        # Without a distribution strategy Keras builds the optimizer inside
        # the first trace of the train step, and a `tf.function` whose first
        # trace creates variables is traced again. Built here (at `fit` or
        # `train_on_batch`, so `trainable` changes after `compile` count),
        # the step is traced once. An unbuilt backbone is left to Keras.
        optimizer = self.optimizer
        if (
            optimizer is not None
            and not optimizer.built
            and getattr(self.backbone, "built", False)
            and self.trainable_variables
        ):
            optimizer.build(self.trainable_variables)
        return super().make_train_function(force=force)

    @staticmethod
    def _labels_or_ids(x, y):
        """`y`, or the ids of `x` where Keras passes the raw batch's `y=None`.

        Only Keras's symbolic build (run under a distribution strategy
        before the first step) calls the loss and metrics with the unmasked
        batch and plain logits; the ids have the labels' shape and dtype.
        """
        if y is not None:
            return y
        return x["token_ids"] if isinstance(x, dict) else x

    def _unpacked(self, x, y, y_pred, sample_weight):
        if isinstance(y_pred, dict) and "weights" in y_pred:
            return y_pred["labels"], y_pred["logits"], y_pred["weights"]
        return self._labels_or_ids(x, y), y_pred, sample_weight

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y, y_pred, sample_weight = self._unpacked(x, y, y_pred, sample_weight)
        return super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y, y_pred, sample_weight = self._unpacked(x, y, y_pred, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def train_step(self, *args):
        # TensorFlow and PyTorch pass `(data)`, JAX `(state, data)`.
        return self._step_masking(super().train_step, "train", args)

    def test_step(self, *args):
        return self._step_masking(super().test_step, "evaluate", args)

    def _step_masking(self, step, mode, args):
        _, y, _ = keras.utils.unpack_x_y_sample_weight(args[-1])
        # Batches that come as `(x, y, sample_weight)` (e.g. from
        # `ds.map(masking)`) are used as they are.
        self._masking_in_call = mode if y is None else None
        try:
            return step(*args)
        finally:
            self._masking_in_call = None
