"""wav2vec 2.0's span-masking rule, written out in exact arithmetic.

The layer tests (TensorFlow and every backend) compare what `SpanMasking`
masks with these probabilities, computed independently of the package:

- `span_count_law`: the law of the number of spans `n` of a sequence of
  `L` real frames: `int(mask_prob * L / mask_length + u)`, at least
  `min_masks`, at most what fits;
- `frame_probabilities`: the chance that each of the `L` frames is masked,
  mixing over `n`. Overlapping spans: `n` of the `S = L - mask_length + 1`
  starts drawn without replacement, and frame `t` stays unmasked when none
  of the `w_t` starts that cover it is drawn, `C(S - w_t, n) / C(S, n)`.
  Disjoint spans: every arrangement of `n` runs among `L - n * mask_length`
  free frames is equally likely (`C(L - n * (mask_length - 1), n)` of them);
  frame `t` is masked when a run starts in `[t - mask_length + 1, t]`,
  counted by arranging the runs before and after that one.
- `arrangements`: every disjoint arrangement, enumerated (small `L`), to
  check the counting above.
"""

import itertools
import math

import numpy as np


def span_count_law(length, mask_prob, mask_length, min_masks, allow_overlap):
    """`{n: probability}` of the number of spans of a sequence of `length` frames."""
    most = max(length - mask_length + 1, 0) if allow_overlap else length // mask_length
    expected = mask_prob * length / mask_length
    whole = math.floor(expected)
    law = {}
    for count, chance in ((whole, 1 - (expected - whole)), (whole + 1, expected - whole)):
        if chance > 0:
            n = min(max(count, min_masks), most)
            law[n] = law.get(n, 0.0) + chance
    return law


def _ways(frames, runs, mask_length):
    """Arrangements of `runs` disjoint runs of `mask_length` among `frames` frames."""
    free = frames - runs * mask_length
    return math.comb(free + runs, runs) if free >= 0 and runs >= 0 else 0


def masked_given_count(length, n, mask_length, allow_overlap):
    """float64 `[length]`: P(frame masked) given `n` spans, exactly."""
    if n == 0:
        return np.zeros(length)
    chances = np.zeros(length)
    if allow_overlap:
        starts = length - mask_length + 1
        for t in range(length):
            covering = min(t, starts - 1) - max(t - mask_length + 1, 0) + 1
            chances[t] = 1 - math.comb(starts - covering, n) / math.comb(starts, n)
        return chances
    total = _ways(length, n, mask_length)
    for t in range(length):
        hits = 0
        for start in range(max(t - mask_length + 1, 0), min(t, length - mask_length) + 1):
            for before in range(n):
                hits += _ways(start, before, mask_length) * _ways(
                    length - start - mask_length, n - 1 - before, mask_length
                )
        chances[t] = hits / total
    return chances


def frame_probabilities(length, mask_prob, mask_length, min_masks, allow_overlap):
    """float64 `[length]`: the chance each real frame is masked."""
    law = span_count_law(length, mask_prob, mask_length, min_masks, allow_overlap)
    return sum(
        chance * masked_given_count(length, n, mask_length, allow_overlap)
        for n, chance in law.items()
    )


def arrangements(length, n, mask_length):
    """Every mask of `n` disjoint runs of `mask_length` in `length` frames."""
    masks = []
    for starts in itertools.combinations(range(length - mask_length + 1), n):
        if all(b - a >= mask_length for a, b in zip(starts, starts[1:])):
            mask = np.zeros(length, bool)
            for start in starts:
                mask[start : start + mask_length] = True
            masks.append(mask)
    return masks


def runs(mask_row):
    """Lengths of the runs of True in a bool row."""
    padded = np.concatenate([[False], mask_row, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges[1::2] - edges[::2]
