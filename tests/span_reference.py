"""NumPy statements of span corruption that the kernel and layer tests share.

`expected_counts` is T5's arithmetic written out once more, independently
of the package; `restore` puts the targets' spans back at the inputs'
sentinels; `runs` reads the noise and non-noise runs off a corrupted pair.
"""

import numpy as np


def expected_counts(n, noise_density, mean_noise_span_length, max_spans=None):
    """`(num_noise, num_spans)` of a row of `n` tokens (T5's float32 arithmetic)."""
    if n < 2:
        return 0, 0
    num_noise = int(np.round(np.float32(n) * np.float32(noise_density)))
    num_noise = min(max(num_noise, 1), n - 1)
    num_spans = int(np.round(np.float32(num_noise) / np.float32(mean_noise_span_length)))
    num_spans = max(num_spans, 1)
    num_spans = min(num_spans, num_noise, n - num_noise)
    if max_spans is not None:
        num_spans = min(num_spans, max_spans)
    return num_noise, num_spans


def strip(row, pad_token_id=0, eos_id=None, length=None):
    """A row's real part: `length` values, else up to the eos or trailing padding."""
    row = [int(v) for v in row]
    if length is not None:
        row = row[:length]
    elif eos_id is not None and eos_id in row:
        row = row[: row.index(eos_id) + 1]
    else:
        while row and row[-1] == pad_token_id:
            row.pop()
    if eos_id is not None:
        assert row and row[-1] == eos_id, row
        row = row[:-1]
    return row


def restore(inputs, targets, sentinel_ids):
    """The sequence: each sentinel in `inputs` replaced by its span in `targets`.

    Checks the pair is well formed on the way: the inputs' sentinels are
    `sentinel_ids[0], [1], ...` in order, the targets are those sentinels
    each followed by at least one token.
    """
    sentinel_index = {s: i for i, s in enumerate(sentinel_ids)}
    spans = []
    for token in targets:
        if token in sentinel_index:
            assert sentinel_index[token] == len(spans), (targets, token)
            spans.append([])
        else:
            assert spans, targets
            spans[-1].append(token)
    assert all(spans), targets
    sequence, used = [], 0
    for token in inputs:
        if token in sentinel_index:
            assert sentinel_index[token] == used, (inputs, token)
            sequence.extend(spans[used])
            used += 1
        else:
            sequence.append(token)
    assert used == len(spans), (inputs, targets)
    return sequence


def runs(inputs, targets, sentinel_ids):
    """`(nonnoise_lengths, noise_lengths)` of a well-formed pair."""
    sentinels = set(sentinel_ids)
    nonnoise, count = [], 0
    for token in inputs:
        if token in sentinels:
            nonnoise.append(count)
            count = 0
        else:
            count += 1
    noise = []
    for token in targets:
        if token in sentinels:
            noise.append(0)
        else:
            noise[-1] += 1
    return nonnoise, noise


def composition_first_part(m, k):
    """P(first part = j), j = 1..m-k+1, of a uniform composition of m into k parts."""
    from math import comb

    total = comb(m - 1, k - 1)
    return np.array([comb(m - j - 1, k - 2) / total for j in range(1, m - k + 2)])
