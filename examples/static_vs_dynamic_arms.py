"""The arms of `static_vs_dynamic.py`: their data, their masking, their evaluation.

Every arm of the study trains on the same packed sequences in the same order
(`static_masking.epoch_order`); what differs is how its batches are masked:

- `static-dupe<k>`: `k` token-level copies drawn once before training
  (`static_masking.materialize_static_masks`), copy `epoch % k` in epoch
  `epoch`;
- `dynamic`: `DynamicMLMMasking`, token-level, a fresh mask for every batch;
- `dynamic-word`, `dynamic-span`: the same, selecting whole words or
  SpanBERT spans of whole words (`granularity="word"` / `"span"`);
- `dynamic-schedule`: token-level, the rate a linear decay over training.

Every arm is scored on one fixed token-level masking of the held-out
sequences, and the word and span arms also on a fixed masking of their kind.
"""

import os
import sys

import keras
import numpy as np
import tensorflow as tf

import keras_dynmask
from keras_dynmask.data import mask_dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from static_masking import epoch_order  # noqa: E402
from static_masking import materialize_static_masks  # noqa: E402
from static_masking import static_masked_dataset  # noqa: E402
import pretrain_mlm  # noqa: E402  (packing, evaluation masking)

# One masking of the validation split, for every arm and every seed.
EVALUATION_SEED = 20190726
STRATEGY_ARMS = ("dynamic", "dynamic-word", "dynamic-span", "dynamic-schedule")


def packed_rows(texts, tokenizer, sequence_length):
    """All packed `[CLS] ... [SEP]` rows of a split, in corpus order.

    Args:
        texts: a `tf.data.Dataset` of scalar strings.
        tokenizer: a `WordPieceTokenizer`.
        sequence_length: int, ids per row.

    Returns:
        An int32 NumPy array `[N, sequence_length]`.
    """
    batches, _ = pretrain_mlm.packed_dataset(
        texts, tokenizer, sequence_length, batch_size=1024, drop_remainder=False
    )
    return np.concatenate([batch.numpy() for batch in batches])


def subset(rows, count, seed):
    """`count` rows drawn without replacement (all of them if fewer), in order."""
    if len(rows) <= count:
        return rows
    chosen = np.random.default_rng(seed).choice(len(rows), size=count, replace=False)
    return rows[np.sort(chosen)]


class ArmUnavailable(Exception):
    """An arm needs a masking feature this `keras_dynmask` does not have."""


def arm_masker(arm, tokenizer, mask_rate, total_steps, schedule_start):
    """The `DynamicMLMMasking` (in `"fit"` mode) that masks `arm`'s batches.

    Static arms and `dynamic` use token-level masking at `mask_rate` (the
    static arms draw their stored copies with it); `dynamic-word` and
    `dynamic-span` select whole words (WordPiece's `##` marks a word's
    continuation); `dynamic-schedule` decays the rate linearly from
    `schedule_start` to `mask_rate` over `total_steps` batches.

    Args:
        arm: str, the arm's name.
        tokenizer: the `WordPieceTokenizer`.
        mask_rate: float, the (final) masking rate.
        total_steps: int, the run's training steps.
        schedule_start: float, `dynamic-schedule`'s first rate.

    Returns:
        A `DynamicMLMMasking`.

    Raises:
        ArmUnavailable: the layer does not accept (or cannot run) what the
            arm needs.
    """
    options = {"mask_rate": mask_rate}
    if arm in ("dynamic-word", "dynamic-span"):
        options["granularity"] = arm.split("-")[1]
    elif arm == "dynamic-schedule":
        options["mask_rate"] = keras.optimizers.schedules.PolynomialDecay(
            schedule_start, total_steps, mask_rate
        )
    try:
        if "granularity" in options:
            options["word_starts"] = keras_dynmask.word_starts(
                tokenizer.vocabulary, "wordpiece"
            )
        masker = keras_dynmask.DynamicMLMMasking(
            vocabulary_size=tokenizer.vocabulary_size,
            mask_token_id=tokenizer.mask_id,
            special_token_ids=[tokenizer.cls_id, tokenizer.sep_id, tokenizer.unk_id],
            pad_token_id=tokenizer.pad_id,
            output_mode="fit",
            ignore_index=pretrain_mlm.IGNORE_INDEX,
            **options,
        )
        probe = tf.constant(
            [[tokenizer.cls_id] + [tokenizer.mask_id + 1] * 6], tf.int32
        )
        masker(probe, training=True, seed=tf.constant([0, 0], tf.int32))
    except (TypeError, ValueError, AttributeError, tf.errors.OpError) as error:
        needs = {k: v for k, v in options.items() if k not in ("word_starts",)}
        raise ArmUnavailable(
            f"`{arm}` needs DynamicMLMMasking({', '.join(f'{k}=...' for k in needs)}), "
            f"which this keras_dynmask does not run: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        ) from error
    return masker


def training_batches(arm, rows, masker, batch_size, epochs, seed):
    """The arm's training batches, all epochs back to back, one data order.

    Every arm of every family sees the same sequences in the same order
    (`epoch_order(seed)`); static arms read masks stored before training,
    dynamic arms mask each batch with its own key `(seed, batch index)`
    (`mask_dataset`), so a rate schedule's step is the batch's index.

    Args:
        arm: str, the arm's name (`static-dupe<k>` or `dynamic...`).
        rows: int32 array `[N, T]`.
        masker: from `arm_masker`.
        batch_size, epochs, seed: ints.

    Returns:
        A `tf.data.Dataset` of `(x, y, sample_weight)` batches.
    """
    if arm.startswith("static-dupe"):
        dupe = int(arm[len("static-dupe") :])
        static = materialize_static_masks(rows, masker, dupe_factor=dupe, seed=seed)
        return static_masked_dataset(static, batch_size, epochs, seed)
    table = tf.constant(rows)
    batches = epoch_order(len(rows), batch_size, epochs, seed).map(
        lambda epoch, indices: tf.gather(table, indices)
    )
    steps = (len(rows) // batch_size) * epochs
    batches = batches.apply(tf.data.experimental.assert_cardinality(steps))
    return mask_dataset(batches, masker, seed=seed)


def held_out(tokenizer, rows, args, arms):
    """The fixed maskings of the validation split every run is scored on.

    Args:
        tokenizer: the `WordPieceTokenizer`.
        rows: int32 array `[N, T]`, the held-out sequences.
        args: the flags.
        arms: the arms that run; `dynamic-word` and `dynamic-span` get a
            fixed masking of their own kind as well.

    Returns:
        A dict: `"token"` -> the 15 % token-level masking (seed
        `EVALUATION_SEED`), and arm -> that arm's own masking.
    """
    batches = tf.data.Dataset.from_tensor_slices(rows).batch(args.batch_size)
    maskings = {"token": arm_masker("dynamic", tokenizer, args.mask_rate, 1, 0)}
    for arm in ("dynamic-word", "dynamic-span"):
        if arm in arms:
            maskings[arm] = arm_masker(arm, tokenizer, args.mask_rate, 1, 0)
    return {
        name: pretrain_mlm.fixed_masking(batches, masker, EVALUATION_SEED)
        for name, masker in maskings.items()
    }
