"""Image-patch masks written once against the op set: MAE, BEiT and SimMIM.

Every function takes the op set `ops` first (`keras_dynmask.kernels.op_set`)
and works on a whole batch of patch sequences `[B, N, ...]`, row-major over
a `rows x cols` grid, with static widths: the same code runs in `tf.data`,
in a TensorFlow, JAX or PyTorch model, under jit, and in a SavedModel.
Every random draw is a uniform float32 keyed by a `[2]` seed (`ops.uniform`),
so each mask is a pure function of the batch's shape and the seed.

- `random_patch_masking` (MAE): a uniformly random subset of `K` patches
  per image from one argsort of random keys, and the indices that restore
  the original order (`restore_order`).
- `block_patch_mask` (BEiT): rectangles added one candidate at a time
  while they fit the budget; the loop runs over a small, static number of
  candidate blocks, never over patches.
- `simmim_patch_mask` (SimMIM): an exact number of cells of a coarse grid,
  upsampled to the model's patches.
"""

import math
from fractions import Fraction

import numpy as np


def exact_fraction(value):
    """A float as the decimal it was written as: `0.9` is 9/10, not the
    binary double just below it."""
    return Fraction(repr(float(value)))


def kept_count(num_patches, mask_ratio):
    """MAE's `floor(N * (1 - mask_ratio))` in exact arithmetic, at least 1.

    `N = 10, mask_ratio = 0.9` gives 1 (in floats `10 * (1 - 0.9)` is
    0.99999...).
    """
    kept = math.floor(num_patches * (1 - exact_fraction(mask_ratio)))
    return max(1, kept)


def masked_cell_count(num_cells, mask_ratio):
    """SimMIM's masked cells: `round(mask_ratio * cells)` in exact
    arithmetic, halves to even (as `tf.round` and `np.round`)."""
    return round(num_cells * exact_fraction(mask_ratio))


def default_num_masked(num_patches):
    """The budget when none is given: `round(0.4 * N)` (78 of 196; BEiT
    sets 75)."""
    return round(num_patches * Fraction(2, 5))


def random_patch_masking(ops, patches, seed, num_kept):
    """MAE's random masking of a batch of patch sequences.

    Args:
        ops: the op set.
        patches: `[B, N, D]` patches.
        seed: `[2]` int seed.
        num_kept: Python int `K` in `[1, N]`.

    Returns:
        `(kept, mask, ids_restore)`: the kept patches `[B, K, D]` in the
        order of their random keys; bool `[B, N]`, True where a patch was
        dropped; int32 `[B, N]`, where each original patch sits in
        `[kept ; dropped]` (so `restore_order` inverts the shuffle).
    """
    batch_size, num_patches = ops.shape(patches)[0], ops.shape(patches)[1]
    keys = ops.uniform((batch_size, num_patches), seed)
    ids_shuffle = ops.cast(ops.argsort(keys, axis=-1), "int32")
    # The inverse permutation of a permutation is its argsort.
    ids_restore = ops.cast(ops.argsort(ids_shuffle, axis=-1), "int32")
    kept = ops.gather_rows(patches, ids_shuffle[:, :num_kept])
    return kept, ids_restore >= num_kept, ids_restore


def unmasked_patches(ops, patches):
    """`random_patch_masking`'s outputs when nothing is masked: every patch
    kept in order, no mask, the identity `ids_restore`."""
    batch_size, num_patches = ops.shape(patches)[0], ops.shape(patches)[1]
    identity = ops.arange(num_patches, dtype="int32")[None, :]
    ids_restore = ops.broadcast_to(identity, (batch_size, num_patches))
    return patches, ids_restore < 0, ids_restore


def restore_order(ops, sequence, ids_restore):
    """Puts `[kept ; mask tokens]` (`[B, N, ...]`) back in the patches'
    original order: row `b`, position `j` takes `sequence[b,
    ids_restore[b, j]]`."""
    return ops.gather_rows(sequence, ops.cast(ids_restore, "int32"))


def grid_coordinates(grid):
    """`(row, col)` of each patch of a row-major `grid`, int32 NumPy arrays."""
    rows, cols = grid
    index = np.arange(rows * cols, dtype=np.int32)
    return index // cols, index % cols


def block_candidate_count(num_masked, min_block_patches):
    """The static number of candidate blocks `block_patch_mask` tries.

    At least 12 and four per block of the smallest size the budget holds:
    with BEiT's setting (196 patches, 75 masked, blocks of 16 or more) 20
    candidates, which fill 97 % of the budget on average (the tests hold
    it above 85 %). Each candidate costs a few `[B, N]` ops.
    """
    return max(12, 4 * math.ceil(num_masked / min_block_patches))


def block_patch_mask(
    ops, batch_size, grid, seed, num_masked, min_block_patches, block_aspect, num_candidates
):
    """BEiT's blockwise mask, `[B, N]` bool, a fresh one per image.

    Candidate blocks are tried one after another, as BEiT's generator tries
    them: each draws a target area uniform in `[min_block_patches,
    max(min_block_patches, remaining)]` (`remaining` the budget left), a
    log-uniform aspect ratio in `[block_aspect, 1 / block_aspect]`, `h =
    round(sqrt(area * aspect))`, `w = round(sqrt(area / aspect))`, and a
    position uniform over the places the block fits. It is accepted when
    `h * w >= min_block_patches`, `h / w` lies in `[block_aspect, 1 /
    block_aspect]`, the block fits the grid, and it adds at least one new
    patch but no more than `remaining`: so no image ever has more than
    `num_masked` patches masked. Blocks may overlap earlier ones. The loop
    (`ops.fori_loop`, compiled once under XLA) runs over `num_candidates`
    candidates (static), each a few dense `[B, N]` ops; nothing loops over
    patches.
    """
    rows, cols = grid
    row_of, col_of = grid_coordinates(grid)
    row_of = ops.convert(row_of)[None, :]
    col_of = ops.convert(col_of)[None, :]
    # One row of four draws per candidate: area, aspect, top, left.
    draws = ops.reshape(ops.uniform((num_candidates * 4, batch_size), seed), (num_candidates, 4, -1))
    log_low = math.log(block_aspect)
    log_span = -2.0 * log_low
    tolerance = 1e-6

    def try_candidate(candidate, state):
        mask, remaining = state
        u_area, u_aspect, u_top, u_left = (
            ops.take(ops.take(draws, candidate, axis=0), k, axis=0) for k in range(4)
        )
        ceiling = ops.cast(ops.maximum(remaining, min_block_patches), "float32")
        area = min_block_patches + u_area * (ceiling - min_block_patches)
        aspect = ops.exp(log_low + u_aspect * log_span)
        height = ops.cast(ops.round(ops.sqrt(area * aspect)), "int32")
        width = ops.cast(ops.round(ops.sqrt(area / aspect)), "int32")
        height_f, width_f = ops.cast(height, "float32"), ops.cast(width, "float32")
        valid = (
            (height >= 1) & (width >= 1) & (height <= rows) & (width <= cols)
            & (height * width >= min_block_patches)
            & (height_f >= block_aspect * width_f * (1 - tolerance))
            & (height_f * block_aspect <= width_f * (1 + tolerance))
        )
        top = ops.floor(u_top * ops.cast(ops.maximum(rows - height + 1, 1), "float32"))
        left = ops.floor(u_left * ops.cast(ops.maximum(cols - width + 1, 1), "float32"))
        top = ops.minimum(ops.cast(top, "int32"), ops.maximum(rows - height, 0))[:, None]
        left = ops.minimum(ops.cast(left, "int32"), ops.maximum(cols - width, 0))[:, None]
        cover = (
            (row_of >= top) & (row_of < top + height[:, None])
            & (col_of >= left) & (col_of < left + width[:, None])
        )
        new_count = ops.sum(ops.cast(cover & ops.logical_not(mask), "int32"), axis=-1)
        accepted = valid & (new_count > 0) & (new_count <= remaining)
        mask = mask | (cover & accepted[:, None])
        return mask, remaining - ops.where(accepted, new_count, 0)

    mask = ops.zeros((batch_size, rows * cols), "bool")
    remaining = ops.zeros((batch_size,), "int32") + num_masked
    mask, _ = ops.fori_loop(0, num_candidates, try_candidate, (mask, remaining))
    return mask


def simmim_patch_mask(ops, batch_size, grid, cell_size, seed, num_masked_cells):
    """SimMIM's mask, `[B, N]` bool: exactly `num_masked_cells` cells of the
    coarse grid (cells of `cell_size x cell_size` patches), a uniformly
    random subset per image, each masking all its patches."""
    rows, cols = grid
    cell_cols = cols // cell_size
    num_cells = (rows // cell_size) * cell_cols
    keys = ops.uniform((batch_size, num_cells), seed)
    ranks = ops.argsort(ops.argsort(keys, axis=-1), axis=-1)
    masked_cells = ranks < num_masked_cells
    row_of, col_of = grid_coordinates(grid)
    cell_of_patch = (row_of // cell_size) * cell_cols + col_of // cell_size
    return ops.take(masked_cells, ops.convert(cell_of_patch), axis=1)


def apply_mask_token(ops, patches, mask, mask_token):
    """`patches` with the masked ones replaced by `mask_token` (`[D]`)."""
    token = ops.cast(mask_token, ops.dtype_name(patches))
    return ops.where(mask[:, :, None], token[None, None, :], patches)
