"""`examples/masked_autoencoder_digits.py --quick`: the masked-patch loss falls
and the picture of inputs, masks and reconstructions is written."""

import re

import matplotlib.image
import numpy as np
import pytest

import masked_autoencoder_digits as mae

# The script runs in this process (`main`, as its command line calls it):
# a child process would start TensorFlow again.


def test_patchify_round_trips():
    images = np.random.default_rng(0).random((3, 8, 8))
    patches = mae.patchify(images)
    assert patches.shape == (3, 16, 4)
    np.testing.assert_array_equal(patches[:, 1], images[:, 0:2, 2:4].reshape(3, 4))
    np.testing.assert_array_equal(mae.unpatchify(patches), images)


def test_quick_run_learns_and_writes_the_picture(tmp_path, capsys):
    output = tmp_path / "mae.png"
    assert mae.main(["--quick", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    losses = [float(x) for x in re.findall(r"training loss (\d+\.\d+)", printed)]
    assert len(losses) >= 3, printed
    assert losses[-1] < 0.7 * losses[0], losses
    before = float(re.search(r"before training: (\d+\.\d+)", printed).group(1))
    after = float(re.search(r"after training: (\d+\.\d+)", printed).group(1))
    mean_image = float(re.search(r"training mean: (\d+\.\d+)", printed).group(1))
    # Better than the best guess that ignores the visible patches.
    assert after < min(before, 0.9 * mean_image), printed
    image = matplotlib.image.imread(output)
    assert image.shape[0] > 200 and image.shape[1] > 600


def test_bad_flags_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        mae.main(["--epochs", "0"])
    assert exit_.value.code == 2 and "--epochs" in capsys.readouterr().err
