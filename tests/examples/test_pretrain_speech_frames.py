"""`examples/pretrain_speech_frames.py`: the masked-frame loss falls; .wav files are read."""

import wave

import numpy as np

import pretrain_speech_frames


def test_quick_run_lowers_the_masked_frame_loss(capsys):
    result = pretrain_speech_frames.run(pretrain_speech_frames.parse_args(["--quick"]))
    printed = capsys.readouterr().out
    losses = result["losses"]
    assert len(losses) == 4 and printed.count("masked-frame loss") == 5
    assert losses[-1] < losses[0], losses
    # Held out, masked as in training: below predicting the mean frame there.
    assert result["held_out_masked_frames"] > 100
    assert result["held_out_loss"] < result["held_out_baseline"], result


def test_wav_files_are_read_as_mono_16_bit(tmp_path):
    left = (np.sin(np.arange(800) / 5) * 20000).astype("<i2")
    right = (left // 2).astype("<i2")
    with wave.open(str(tmp_path / "a.wav"), "wb") as audio:
        audio.setnchannels(2)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(np.stack([left, right], axis=1).tobytes())
    args = pretrain_speech_frames.parse_args(["--wav-dir", str(tmp_path), "--max-seconds", "0.05"])
    [(samples, rate)] = pretrain_speech_frames.load_audio(args)
    assert rate == 8000 and len(samples) == 400  # cut to 0.05 s
    np.testing.assert_allclose(samples, (left[:400] + right[:400]) / 2 / 32768.0, rtol=1e-6)
    features, padding = pretrain_speech_frames.padded_features([(samples, rate)], 16)
    assert features.shape == (1, 3, 16) and padding.all()  # 1 + (400 - 200) // 80 frames


def test_an_empty_wav_dir_is_an_error(tmp_path, capsys):
    assert pretrain_speech_frames.main(["--wav-dir", str(tmp_path)]) == 2
    assert "no .wav files" in capsys.readouterr().err
