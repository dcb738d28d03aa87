"""`PatchMasking`: MAE, BEiT and SimMIM masks over image patches, and
`restore_patches`, the MAE decoder's inverse of the random shuffle."""

import math

import keras
import numpy as np
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import validation
from keras_dynmask.kernels import op_set
from keras_dynmask.kernels import patch_selection
from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import seeds
from keras_dynmask.masking_layer import MaskingLayer
from keras_dynmask.masking_layer import backend_values
from keras_dynmask.masking_layer import build_once
from keras_dynmask.masking_layer import is_symbolic

MODES = ("random", "block", "simmim")
MASK_TOKENS = ("learned", None)


@keras.saving.register_keras_serializable(package="keras_dynmask")
class PatchMasking(MaskingLayer):
    """Masks image patches for masked-image-modelling pre-training.

    The input is a batch of patch sequences `[B, N, D]`, row-major over a
    `rows x cols` grid (`grid`, by default the square grid of `N`). Three
    modes:

    - `"random"` (MAE): keeps `K = floor(N * (1 - mask_ratio))` patches per
      image (in exact arithmetic: `N = 10, mask_ratio = 0.9` keeps 1; at
      least 1), a uniformly random subset drawn afresh for every image, and
      returns the kept patches for the encoder, the mask, and the indices
      that restore the original order for the decoder
      (`restore_patches`).
    - `"block"` (BEiT): rectangles of `h x w` patches with `h * w >=
      min_block_patches` and `h / w` in `[block_aspect, 1 / block_aspect]`,
      placed uniformly and added one after another while they fit the
      budget: never more than `num_masked` patches per image (default
      `round(0.4 * N)`, 78 of 196; BEiT sets 75), and close to it (97 % of
      it on average in BEiT's setting, 75 of 196 with blocks of 16 or
      more). Candidate blocks are tried as BEiT's
      generator tries them (a target area uniform between
      `min_block_patches` and the budget left, a log-uniform aspect ratio,
      rounded sides); a candidate is kept when it adds at least one new
      patch and no more than the budget left. A fixed number of
      candidates is tried per image (`block_candidates`), so the kernel
      has static shapes under jit.
    - `"simmim"` (SimMIM): the image is cut into cells of `mask_patch_size`
      pixels, each covering `(mask_patch_size / model_patch_size) ** 2` of
      the model's patches; exactly `round(mask_ratio * cells)` cells
      (halves to even) are masked per image, a uniformly random subset.

    In `"block"` and `"simmim"` modes the masked patches are replaced by a
    trainable mask token of size `D` (`mask_token="learned"`, created in
    `build`, initialised from a truncated normal of standard deviation
    0.02 as in BEiT and SimMIM), or left as they are (`mask_token=None`:
    the model applies its own token where `"mask"` is True). In `tf.data`
    the token's current value is used (it is not trained there).

    Masking happens only in training, as for `Dropout`: called on its own
    (directly or in `tf.data`) the layer masks unless `training=False`;
    inside a model it masks in `fit` only. Not training, nothing is masked:
    in `"random"` mode every patch is kept in order (`"kept"` is the input,
    width `N`, and `"ids_restore"` the identity), so the kept width is `K`
    in training and `N` otherwise; in a functional model, where the layer
    cannot know which, the symbolic `"kept"` has width `None` (a
    `training=True` or `False` in the call on the model's `Input`, e.g.
    `PatchMasking()(inputs, training=True)`, fixes it).

    Randomness: unseeded, every call and every epoch of `ds.map(layer)`
    draws fresh masks; inside a JAX or PyTorch model a
    `keras.random.SeedGenerator` gives fresh masks every step under jit. A
    call-time `seed` (int `[2]`) makes the output a pure function of
    `(patches, seed)`; a constructor `seed` makes the sequence of masks
    reproducible run to run.

    Args:
        mode: `"random"`, `"block"` or `"simmim"`.
        mask_ratio: float in `(0, 1)`, the share of patches (`"random"`) or
            cells (`"simmim"`) masked.
        num_masked: `"block"`: `None` or int >= 1, the most patches masked
            per image; `None` gives `round(0.4 * N)`. At least
            `min_block_patches`, at most `N`.
        min_block_patches: `"block"`: int >= 1, the smallest block's area
            in patches; at most the grid's size.
        block_aspect: `"block"`: float in `(0, 1]`, the smallest `h / w`
            (the largest is its inverse).
        mask_patch_size: `"simmim"`: int, the mask cell's side in pixels, a
            multiple of `model_patch_size`.
        model_patch_size: `"simmim"`: int >= 1, the model's patch side in
            pixels.
        grid: `None` or `(rows, cols)` with `rows * cols == N`; `None`: the
            square grid of `N` (then `N` must be a square in the `"block"`
            and `"simmim"` modes; `"random"` takes any `N`).
        mask_token: `"learned"` or `None` (`"block"` and `"simmim"`; ignored
            by `"random"`, which drops masked patches).
        seed: `None` or int, seeds the layer's sequence of masks.
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        patches: `[B, N, D]` patches (any float dtype), with `N` static.
        training: `False` masks nothing. `None` masks when the layer is
            called on its own, and inside a model only when Keras trains.
        seed: optional shape-`[2]` int tensor; the output is then a pure
            function of `(patches, seed)`.

    Returns:
        `"random"`: a dict with `"kept"` (`[B, K, D]`, the kept patches),
        `"mask"` (bool `[B, N]`, True where a patch was dropped, in the
        original order) and `"ids_restore"` (int32 `[B, N]`: where each
        original patch sits in `[kept ; dropped]`).
        `"block"` and `"simmim"`: a dict with `"patches"` (`[B, N, D]`, the
        masked patches replaced by the mask token) and `"mask"` (bool `[B,
        N]`, True where masked).

    Example:

    >>> import numpy as np
    >>> patches = np.random.default_rng(0).random((2, 16, 8), dtype="float32")
    >>> out = PatchMasking("random", mask_ratio=0.75, seed=1)(patches)
    >>> tuple(out["kept"].shape), tuple(out["mask"].shape)
    ((2, 4, 8), (2, 16))
    >>> np.asarray(out["mask"]).sum(axis=1)
    array([12, 12])
    >>> out = PatchMasking("simmim", mask_ratio=0.5, mask_patch_size=8,
    ...                    model_patch_size=4, seed=1)(patches)
    >>> np.asarray(out["mask"]).sum(axis=1)  # 2 of 4 cells, 4 patches each
    array([8, 8])
    """

    masks_when_called_alone = True

    def __init__(
        self,
        mode: str = "random",
        mask_ratio: float = 0.75,
        num_masked: int | None = None,
        min_block_patches: int = 16,
        block_aspect: float = 0.3,
        mask_patch_size: int = 32,
        model_patch_size: int = 4,
        grid: "tuple[int, int] | None" = None,
        mask_token: str | None = "learned",
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check = validation
        self.mode = check.as_choice("mode", mode, MODES)
        self.mask_ratio = check.as_float(
            "mask_ratio", mask_ratio, 0, 1, low_open=True, high_open=True, as_written=True
        )
        self.num_masked = check.as_int("num_masked", num_masked, 1, allow_none=True)
        self.min_block_patches = check.as_int("min_block_patches", min_block_patches, 1)
        self.block_aspect = check.as_float("block_aspect", block_aspect, 0, 1, low_open=True)
        self.mask_patch_size = check.as_int("mask_patch_size", mask_patch_size, 1)
        self.model_patch_size = check.as_int("model_patch_size", model_patch_size, 1)
        if self.mask_patch_size % self.model_patch_size:
            raise ValueError(
                "`mask_patch_size` must be a multiple of `model_patch_size`. "
                f"Received: mask_patch_size={mask_patch_size!r}, "
                f"model_patch_size={model_patch_size!r}"
            )
        self.grid = _as_grid(grid)
        if mask_token not in MASK_TOKENS:
            raise ValueError(
                f'`mask_token` must be "learned" or None. Received: mask_token={mask_token!r}'
            )
        self.mask_token = mask_token
        self.seed = check.as_seed(seed)
        self.mask_embedding = None
        if self.grid is not None:
            self._plan(self.grid[0] * self.grid[1])  # grid-dependent checks, now
        self._generator = seeds.layer_generator(self.seed)
        self._backend_seeds = seeds.backend_seed_generator(self.seed)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "mask_ratio": self.mask_ratio,
                "num_masked": self.num_masked,
                "min_block_patches": self.min_block_patches,
                "block_aspect": self.block_aspect,
                "mask_patch_size": self.mask_patch_size,
                "model_patch_size": self.model_patch_size,
                "grid": None if self.grid is None else list(self.grid),
                "mask_token": self.mask_token,
                "seed": self.seed,
            }
        )
        return config

    @property
    def uses_mask_token(self):
        """True when masked patches are replaced by a learned token."""
        return self.mode != "random" and self.mask_token == "learned"

    def build(self, input_shape):
        num_patches, depth = self._static_dims(input_shape)
        self._plan(num_patches)
        if self.uses_mask_token and self.mask_embedding is None:
            self.mask_embedding = self.add_weight(
                shape=(depth,),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                name="mask_embedding",
            )
        self.built = True

    def __call__(self, patches, training=None, seed=None, **kwargs):
        if not self.built and _shape_list(patches) is not None:
            # Keras reads no shape from NumPy arrays or lists: built here.
            def build():
                with keras.name_scope(self.name, caller=self):
                    self.build(_shape_list(patches))

            build_once(self, build)
        return super().__call__(patches, training=training, seed=seed, **kwargs)

    def call(
        self,
        patches: "tf.Tensor | np.ndarray",
        training: "bool | tf.Tensor | None" = None,
        seed: "tf.Tensor | None" = None,
    ) -> dict:
        ops, patches = backend_values(patches)
        self._check_patches(patches)
        if ops is op_set.KERAS:
            if not training:
                return self._outputs(ops, patches, None)
            return self._outputs(ops, patches, seeds.backend_call_seed(seed, self._backend_seeds))
        if training is None or training is False:
            return self._outputs(ops, patches, None)
        if training is True:
            return self._outputs(ops, patches, self._tensorflow_seed(seed))
        return tf.cond(  # a symbolic training flag
            tf.cast(training, tf.bool),
            lambda: self._outputs(ops, patches, self._tensorflow_seed(seed)),
            lambda: self._outputs(ops, patches, None),
        )

    def compute_output_shape(self, input_shape):
        """The output shapes (a dict) for patches of `input_shape`."""
        spec = self.compute_output_spec(keras.KerasTensor(input_shape, dtype=self.compute_dtype))
        return {key: value.shape for key, value in spec.items()}

    def compute_output_spec(self, patches, training=None, seed=None):
        self._check_patches(patches)
        shape = tuple(patches.shape)
        batch, num_patches, depth = shape
        plan = self._plan(num_patches)
        mask = keras.KerasTensor((batch, num_patches), dtype="bool")
        if self.mode != "random":
            return {"patches": keras.KerasTensor(shape, dtype=patches.dtype), "mask": mask}
        width = {True: plan["num_kept"], False: num_patches}.get(training)
        return {
            "kept": keras.KerasTensor((batch, width, depth), dtype=patches.dtype),
            "mask": mask,
            "ids_restore": keras.KerasTensor((batch, num_patches), dtype="int32"),
        }

    # Masking.

    def _tensorflow_seed(self, seed):
        # Seeds in [0, 2**32): XLA's stateless draws then match TensorFlow's.
        return random_bits.philox_seed(seeds.call_seed(seed, self._generator))

    def _outputs(self, ops, patches, seed):
        """The output dict; `seed=None` masks nothing."""
        plan = self._plan(ops.shape(patches)[1])
        if self.mode == "random":
            if seed is None:
                kept, mask, ids_restore = patch_selection.unmasked_patches(ops, patches)
            else:
                kept, mask, ids_restore = patch_selection.random_patch_masking(
                    ops, patches, seed, plan["num_kept"]
                )
            return {"kept": kept, "mask": mask, "ids_restore": ids_restore}
        batch_size = ops.shape(patches)[0]
        if seed is None:
            mask = ops.zeros((batch_size, plan["num_patches"]), "bool")
            return {"patches": patches, "mask": mask}
        if self.mode == "block":
            mask = patch_selection.block_patch_mask(
                ops,
                batch_size,
                plan["grid"],
                seed,
                num_masked=plan["num_masked"],
                min_block_patches=self.min_block_patches,
                block_aspect=self.block_aspect,
                num_candidates=plan["block_candidates"],
            )
        else:
            mask = patch_selection.simmim_patch_mask(
                ops, batch_size, plan["grid"], plan["cell_size"], seed, plan["masked_cells"]
            )
        if self.uses_mask_token:
            patches = patch_selection.apply_mask_token(ops, patches, mask, self._token_for(ops))
        return {"patches": patches, "mask": mask}

    def _token_for(self, ops):
        """The mask token as a tensor of `ops`' kind."""
        token = self.mask_embedding
        if ops is not op_set.KERAS and keras.backend.backend() != "tensorflow":
            # tf.data under another backend: the token's current value.
            token = tf.constant(keras.ops.convert_to_numpy(token))
        return token

    # Configuration.

    @property
    def block_candidates(self):
        """`"block"`: the candidate blocks tried per image (static), once the
        number of patches is known; else `None`."""
        plans = self.__dict__.get("_plans") or {}
        return next(iter(plans.values())).get("block_candidates") if plans else None

    def _plan(self, num_patches):
        """The grid and the counts for `num_patches` patches (checked, cached)."""
        plans = self.__dict__.get("_plans")
        if plans is None:
            plans = {}
            object.__setattr__(self, "_plans", plans)  # not tracked by Keras
        if num_patches not in plans:
            plans[num_patches] = self._make_plan(num_patches)
        return plans[num_patches]

    def _make_plan(self, num_patches):
        grid = self.grid
        if self.mode == "random" and grid is None:
            # MAE's masking ignores the layout: any N works.
            return {"grid": None, "num_patches": num_patches,
                    "num_kept": patch_selection.kept_count(num_patches, self.mask_ratio)}
        if grid is None:
            side = math.isqrt(num_patches)
            if side * side != num_patches:
                raise ValueError(
                    "PatchMasking needs `grid=(rows, cols)` when the number of "
                    f"patches is not a square. Received: {num_patches} patches, grid=None"
                )
            grid = (side, side)
        elif grid[0] * grid[1] != num_patches:
            raise ValueError(
                "`grid` must multiply to the number of patches N. Received: "
                f"grid={grid!r} for N={num_patches}"
            )
        plan = {"grid": grid, "num_patches": num_patches}
        if self.mode == "random":
            plan["num_kept"] = patch_selection.kept_count(num_patches, self.mask_ratio)
        elif self.mode == "block":
            plan.update(self._block_plan(grid, num_patches))
        else:
            plan.update(self._simmim_plan(grid))
        return plan

    def _block_plan(self, grid, num_patches):
        if self.min_block_patches > num_patches:
            raise ValueError(
                "`min_block_patches` must be at most the grid's size "
                f"{grid[0]}x{grid[1]}={num_patches}. Received: "
                f"min_block_patches={self.min_block_patches!r}"
            )
        num_masked = self.num_masked
        if num_masked is None:
            num_masked = patch_selection.default_num_masked(num_patches)
        if not self.min_block_patches <= num_masked <= num_patches:
            raise ValueError(
                f"`num_masked` must lie in [min_block_patches, N] = "
                f"[{self.min_block_patches}, {num_patches}]"
                f"{' (its default is round(0.4 * N))' if self.num_masked is None else ''}. "
                f"Received: num_masked={num_masked!r}"
            )
        if not _block_shapes(grid, self.min_block_patches, self.block_aspect, num_masked):
            raise ValueError(
                f"No block of at least min_block_patches={self.min_block_patches} "
                f"patches with h / w in [block_aspect, 1 / block_aspect] "
                f"(block_aspect={self.block_aspect!r}) fits the {grid[0]}x{grid[1]} "
                f"grid within num_masked={num_masked}."
            )
        candidates = patch_selection.block_candidate_count(num_masked, self.min_block_patches)
        return {"num_masked": num_masked, "block_candidates": candidates}

    def _simmim_plan(self, grid):
        cell_size = self.mask_patch_size // self.model_patch_size
        if grid[0] % cell_size or grid[1] % cell_size:
            raise ValueError(
                "The patch grid must divide into mask cells of "
                f"mask_patch_size / model_patch_size = {cell_size} patches a side. "
                f"Received: grid {grid[0]}x{grid[1]}, mask_patch_size="
                f"{self.mask_patch_size!r}, model_patch_size={self.model_patch_size!r}"
            )
        num_cells = (grid[0] // cell_size) * (grid[1] // cell_size)
        masked = patch_selection.masked_cell_count(num_cells, self.mask_ratio)
        return {"cell_size": cell_size, "masked_cells": masked}

    # Inputs.

    def _static_dims(self, shape):
        shape = () if shape is None else tuple(shape)
        if len(shape) != 3:
            raise ValueError(
                "PatchMasking needs `patches` of rank 3 [B, N, D]. Received: "
                f"patches of shape {list(shape)}"
            )
        num_patches, depth = shape[1], shape[2]
        if not isinstance(num_patches, (int, np.integer)):
            raise ValueError(
                "PatchMasking needs `patches` [B, N, D] with a static number of "
                f"patches N. Received: patches of shape {list(shape)}"
            )
        if self.uses_mask_token and not isinstance(depth, (int, np.integer)):
            raise ValueError(
                "PatchMasking with a learned mask token needs `patches` [B, N, D] "
                f"with a static D. Received: patches of shape {list(shape)}"
            )
        return int(num_patches), depth

    def _check_patches(self, patches):
        if not hasattr(patches, "shape") or not hasattr(patches, "dtype"):
            raise ValueError(
                f"PatchMasking takes a tensor of patches [B, N, D]. Received: patches={patches!r}"
            )
        shape = patches.shape
        if isinstance(shape, tf.TensorShape):
            if shape.rank is None:
                raise ValueError(
                    "PatchMasking needs `patches` of rank 3 [B, N, D]. Received: "
                    "patches of unknown rank"
                )
            shape = shape.as_list()
        self._static_dims(shape)


def _shape_list(value):
    """A tensor's, array's or `KerasTensor`'s static shape as a list (`None`
    dims unknown), or `None` when it has none (unknown rank, not a tensor)."""
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    shape = getattr(value, "shape", None)
    if isinstance(shape, tf.TensorShape):
        return None if shape.rank is None else shape.as_list()
    return None if shape is None else list(shape)


def _as_grid(grid):
    if grid is None:
        return None
    if isinstance(grid, np.ndarray) and grid.ndim == 1:
        grid = tuple(grid.tolist())  # e.g. np.array([14, 14])
    if (
        isinstance(grid, (list, tuple))
        and len(grid) == 2
        and all(validation.is_integer(g) and int(g) >= 1 for g in grid)
    ):
        return (int(grid[0]), int(grid[1]))
    raise ValueError(f"`grid` must be None or (rows, cols), two ints >= 1. Received: grid={grid!r}")


def _block_shapes(grid, min_block_patches, block_aspect, num_masked):
    """The `(h, w)` blocks allowed on `grid` (NumPy, for the checks)."""
    rows, cols = grid
    return [
        (h, w)
        for h in range(1, rows + 1)
        for w in range(1, cols + 1)
        if min_block_patches <= h * w <= num_masked
        and block_aspect * w <= h * (1 + 1e-6)
        and h * block_aspect <= w * (1 + 1e-6)
    ]


def restore_patches(
    sequence: "tf.Tensor | np.ndarray",
    ids_restore: "tf.Tensor | np.ndarray",
    mask_token: "tf.Tensor | np.ndarray | None" = None,
) -> "tf.Tensor":
    """Puts an MAE decoder's sequence back in the patches' original order.

    `PatchMasking("random")` shuffles each image's patches and keeps the
    first `K`; the decoder appends mask tokens to the `K` encoded patches
    (`[kept ; mask tokens]`, `N` in all) and calls this function with the
    layer's `"ids_restore"`: position `j` of image `b` then holds
    `sequence[b, ids_restore[b, j]]`, the encoding of the original patch
    `j` where it was kept and a mask token where it was dropped.

    Runs on TensorFlow tensors (in `tf.data`, in a SavedModel), on the
    active backend's tensors (inside a layer's `call`, under jit) and on
    symbolic `KerasTensor`s in a functional model (there without
    `mask_token`, whose count is known only at run time).

    Args:
        sequence: `[B, N, D]` (`[kept ; mask tokens]`), or, with
            `mask_token`, the kept part `[B, K, D]` alone.
        ids_restore: int `[B, N]`, `PatchMasking`'s `"ids_restore"`.
        mask_token: optional `[D]` tensor (e.g. a layer's weight): appended
            `N - K` times after `sequence` before restoring the order.

    Returns:
        `[B, N, D]`: the sequence in the original patch order.

    Example:

    >>> import numpy as np
    >>> patches = np.arange(2 * 9 * 1, dtype="float32").reshape(2, 9, 1)
    >>> out = PatchMasking("random", mask_ratio=0.5, seed=3)(patches)
    >>> tokens = -np.ones((2, 9 - 4, 1), "float32")
    >>> restored = np.asarray(restore_patches(
    ...     np.concatenate([np.asarray(out["kept"]), tokens], axis=1),
    ...     out["ids_restore"]))
    >>> bool(np.all(np.where(np.asarray(out["mask"])[..., None], -1, patches) == restored))
    True
    """
    if is_symbolic(sequence) or is_symbolic(ids_restore) or is_symbolic(mask_token):
        if mask_token is not None:
            raise ValueError(
                "restore_patches on symbolic inputs (a functional model) takes "
                "`sequence` as [kept ; mask tokens], without `mask_token`; append "
                "the tokens inside a layer's `call`, or call it there. Received: "
                f"mask_token={mask_token!r}"
            )
        ops = op_set.KERAS
    else:
        ops, sequence = backend_values(sequence)
        ids_restore = ops.convert(ids_restore)
    for name, value, rank in (("sequence", sequence, 3), ("ids_restore", ids_restore, 2)):
        if len(tuple(value.shape)) != rank:
            raise ValueError(
                f"restore_patches needs `{name}` of rank {rank}. Received: "
                f"{name} of shape {list(value.shape)}"
            )
    if mask_token is not None:
        batch_size, kept = ops.shape(sequence)[0], ops.shape(sequence)[1]
        depth = ops.shape(sequence)[2]
        token = ops.reshape(ops.cast(ops.convert(mask_token), ops.dtype_name(sequence)), (1, 1, depth))
        tokens = ops.broadcast_to(token, (batch_size, ops.shape(ids_restore)[1] - kept, depth))
        sequence = ops.concat([sequence, tokens], axis=1)
    return patch_selection.restore_order(ops, sequence, ids_restore)
