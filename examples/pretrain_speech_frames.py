"""Masked-frame pre-training of a tiny speech-style encoder, with `SpanMasking`.

wav2vec 2.0 and HuBERT pre-train by hiding spans of feature frames and
asking the encoder to say what was there. This example does the simplest
honest version of that on log-mel frames:

- audio: by default SYNTHETIC clips the script makes itself (no download,
  no recordings): harmonic tones whose pitch glides (chirps), with an
  attack-decay envelope, a few silent gaps and white noise, from a quarter
  of `--max-seconds` to all of it (1-4 s by default), so batches are
  padded and the padding mask matters. `--wav-dir
  DIR` reads real recordings instead (every `*.wav` in DIR, 16-bit PCM,
  read with Python's `wave` module; stereo is averaged, clips are cut to
  `--max-seconds`);
- features: 25 ms / 10 ms log-mel frames (`tf.signal`), standardised per
  mel bin over the training clips, padded to the longest clip;
- model: a projection, then `SpanMasking(mask_value="learned")` (a
  trainable mask vector replaces the masked frames, fresh spans every
  batch, padding never masked), a convolutional positional mix and one
  self-attention block that never attends to padding, and a head that
  reconstructs the frame;
- loss: mean squared error of the reconstructed log-mel frame, on the
  masked frames only (the layer's `mask` output weights it). The script
  prints the masked-frame loss of every epoch and, at the end, the
  held-out masked-frame loss beside what predicting the mean frame scores
  on the same frames (about 1.0: the frames are standardised).

Runs under the TensorFlow and the JAX backend (`KERAS_BACKEND=jax`): the
training data are NumPy arrays and the masking runs inside the model.

    python examples/pretrain_speech_frames.py            # ~1 minute on a CPU
    python examples/pretrain_speech_frames.py --quick    # seconds
    python examples/pretrain_speech_frames.py --wav-dir ~/recordings
"""

import argparse
import glob
import os
import sys
import time
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quiet_start  # noqa: E402  (the examples' TensorFlow start-up)

tf = quiet_start.import_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dynmask import SpanMasking  # noqa: E402

SAMPLE_RATE = 16000
FRAME_SECONDS, STEP_SECONDS = 0.025, 0.010


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--wav-dir", help="read every *.wav here instead of synthesising audio")
    parser.add_argument("--max-seconds", type=float, default=4.0, help="cut longer recordings")
    parser.add_argument("--clips", type=int, default=512, help="synthetic clips to make")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--mel-bins", type=int, default=32)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--mask-prob", type=float, default=0.5)
    parser.add_argument("--mask-length", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run (tests, CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.epochs, args.mel_bins, args.hidden_dim = 96, 4, 24, 32
        args.max_seconds = min(args.max_seconds, 1.0)
    for name in ("clips", "epochs", "batch_size", "mel_bins", "hidden_dim", "mask_length"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


# Audio.


def synthetic_clip(rng, max_seconds):
    """One synthetic clip: a gliding harmonic tone with gaps and noise, float32."""
    seconds = rng.uniform(0.25, 1.0) * max_seconds
    time_axis = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    start, end = rng.uniform(100, 400), rng.uniform(100, 400)
    pitch = start + (end - start) * time_axis / seconds  # a linear chirp
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    harmonics = rng.integers(2, 6)
    weights = rng.uniform(0.2, 1.0, harmonics) / np.arange(1, harmonics + 1)
    tone = sum(w * np.sin((k + 1) * phase) for k, w in enumerate(weights))
    envelope = np.minimum(1.0, time_axis / 0.05) * np.exp(-time_axis * rng.uniform(0.5, 3.0))
    gaps = np.ones_like(time_axis)
    for _ in range(rng.integers(0, 3)):  # syllable-like pauses
        at, width = rng.uniform(0, seconds), rng.uniform(0.03, 0.12)
        gaps[(time_axis > at) & (time_axis < at + width)] = 0.0
    noise = rng.normal(0, rng.uniform(0.01, 0.05), len(time_axis))
    return (tone * envelope * gaps + noise).astype(np.float32), SAMPLE_RATE


def read_wav(path, max_seconds):
    """`(samples float32 in [-1, 1], sample_rate)` of a 16-bit PCM file."""
    with wave.open(path, "rb") as audio:
        if audio.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM .wav files are read")
        rate, channels = audio.getframerate(), audio.getnchannels()
        frames = audio.readframes(min(audio.getnframes(), int(max_seconds * rate)))
    samples = np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels).mean(axis=1), rate


def load_audio(args):
    if args.wav_dir:
        paths = sorted(glob.glob(os.path.join(args.wav_dir, "*.wav")))
        if not paths:
            raise FileNotFoundError(f"no .wav files in --wav-dir {args.wav_dir}")
        print(f"audio: {len(paths)} recordings from {args.wav_dir}")
        return [read_wav(path, args.max_seconds) for path in paths]
    rng = np.random.default_rng(args.seed)
    print(f"audio: {args.clips} synthetic clips (gliding harmonic tones with gaps and noise)")
    return [synthetic_clip(rng, args.max_seconds) for _ in range(args.clips)]


# Features.


def log_mel(samples, rate, mel_bins):
    """float32 `[frames, mel_bins]` log-mel energies (25 ms windows, 10 ms steps)."""
    frame_length, frame_step = int(FRAME_SECONDS * rate), int(STEP_SECONDS * rate)
    samples = np.pad(samples, (0, max(0, frame_length - len(samples))))
    fft_length = int(2 ** np.ceil(np.log2(frame_length)))
    spectrum = tf.signal.stft(samples, frame_length, frame_step, fft_length)
    mel = tf.signal.linear_to_mel_weight_matrix(mel_bins, fft_length // 2 + 1, rate, 60.0, rate / 2)
    return np.log(tf.matmul(tf.abs(spectrum) ** 2, mel).numpy() + 1e-6)


def padded_features(clips, mel_bins):
    """`(features [N, T, mel_bins], padding_mask [N, T])`, standardised per bin."""
    frames = [log_mel(samples, rate, mel_bins) for samples, rate in clips]
    width = max(len(f) for f in frames)
    every = np.concatenate(frames)
    mean, std = every.mean(axis=0), every.std(axis=0) + 1e-6
    features = np.zeros((len(frames), width, mel_bins), np.float32)
    padding_mask = np.zeros((len(frames), width), bool)
    for row, f in enumerate(frames):
        features[row, : len(f)] = (f - mean) / std
        padding_mask[row, : len(f)] = True
    return features, padding_mask


# Model.


def masked_frame_loss(y_true, y_pred):
    """Mean squared error on the masked frames only.

    `y_pred` carries the reconstruction and, in its last channel, the
    layer's mask (1.0 at masked frames).
    """
    reconstruction, mask = y_pred[..., :-1], y_pred[..., -1]
    error = keras.ops.mean(keras.ops.square(reconstruction - y_true), axis=-1)
    return keras.ops.sum(error * mask) / keras.ops.maximum(keras.ops.sum(mask), 1.0)


def build_model(width, mel_bins, hidden_dim, mask_prob, mask_length, seed):
    frames = keras.Input((width, mel_bins), name="frames")
    padding_mask = keras.Input((width,), dtype="bool", name="padding_mask")
    hidden = keras.layers.Dense(hidden_dim, name="projection")(frames)
    masked, mask = SpanMasking(
        mask_prob=mask_prob, mask_length=mask_length, min_masks=1,
        mask_value="learned", seed=seed, name="span_masking",
    )(hidden, padding_mask=padding_mask)
    mixed = keras.layers.Conv1D(hidden_dim, 5, padding="same", activation="gelu")(masked)
    hidden = keras.layers.LayerNormalization()(masked + mixed)
    attention_mask = keras.layers.Lambda(
        lambda p: keras.ops.logical_and(p[:, None, :], p[:, :, None]), name="attention_mask"
    )(padding_mask)
    attended = keras.layers.MultiHeadAttention(4, hidden_dim // 4)(
        hidden, hidden, attention_mask=attention_mask
    )
    hidden = keras.layers.LayerNormalization()(hidden + attended)
    feed = keras.layers.Dense(2 * hidden_dim, activation="gelu")(hidden)
    hidden = keras.layers.LayerNormalization()(hidden + keras.layers.Dense(hidden_dim)(feed))
    reconstruction = keras.layers.Dense(mel_bins, name="reconstruction")(hidden)
    mask_channel = keras.layers.Lambda(
        lambda m: keras.ops.cast(m, "float32")[..., None], name="mask_channel"
    )(mask)
    output = keras.layers.Concatenate(name="reconstruction_and_mask")([reconstruction, mask_channel])
    return keras.Model({"frames": frames, "padding_mask": padding_mask}, output)


def held_out_loss(model, features, padding_mask, batch_size):
    """Masked-frame loss on held-out clips, masking as in training.

    Returns `(loss, baseline, masked frames)`: `baseline` is the loss of
    predicting the training clips' mean frame (all zeros once standardised)
    at the same masked frames.
    """
    errors, baseline, counts = 0.0, 0.0, 0.0
    for start in range(0, len(features), batch_size):
        x = {"frames": features[start : start + batch_size],
             "padding_mask": padding_mask[start : start + batch_size]}
        out = keras.ops.convert_to_numpy(model(x, training=True))
        mask = out[..., -1]
        error = ((out[..., :-1] - x["frames"]) ** 2).mean(axis=-1)
        errors, counts = errors + float((error * mask).sum()), counts + float(mask.sum())
        baseline += float(((x["frames"] ** 2).mean(axis=-1) * mask).sum())
    return errors / max(counts, 1.0), baseline / max(counts, 1.0), int(counts)


def run(args):
    started = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    features, padding_mask = padded_features(load_audio(args), args.mel_bins)
    held_out = max(1, len(features) // 8)
    train = slice(held_out, None)
    width = features.shape[1]
    print(f"features: {len(features)} clips, up to {width} frames of {args.mel_bins} "
          f"log-mel bins; {padding_mask.mean():.0%} of the padded frames are real")
    model = build_model(width, args.mel_bins, args.hidden_dim, args.mask_prob,
                        args.mask_length, args.seed)
    model.compile(keras.optimizers.Adam(args.learning_rate), loss=masked_frame_loss)
    losses = []

    def report(epoch, logs):
        losses.append(float(logs["loss"]))
        print(f"epoch {epoch + 1}/{args.epochs}: masked-frame loss {losses[-1]:.4f}", flush=True)

    model.fit(
        {"frames": features[train], "padding_mask": padding_mask[train]},
        features[train],
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=report)],
    )
    loss, baseline, frames = held_out_loss(
        model, features[:held_out], padding_mask[:held_out], args.batch_size
    )
    print(f"held-out masked-frame loss {loss:.4f} on {frames} masked frames "
          f"(predicting the mean frame there: {baseline:.4f})")
    print(f"done in {time.perf_counter() - started:.1f} s ({keras.backend.backend()} backend)")
    return {"model": model, "losses": losses, "held_out_loss": loss,
            "held_out_baseline": baseline, "held_out_masked_frames": frames}


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
