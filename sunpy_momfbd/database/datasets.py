"""
Torch datasets of training samples: read from a zarr store, or generated on the fly.

Both yield dicts of tensors ``image`` (H, W), ``blurred`` (H, W), ``modes`` (n_modes, gy, gx),
``conditioning`` (n_conditioning,) and ``d_over_r0`` (); `collate_samples` batches them, expanding
spatially invariant (1×1) mode grids to the largest grid of the batch (a constant map
interpolates to the same constant on any grid, so this is exact).
"""

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from sunpy_momfbd.database.degrade import DegradationConfig, draw_sample, draw_setup
from sunpy_momfbd.database.sources import procedural_patch
from sunpy_momfbd.database.store import open_store

__all__ = ["OnTheFlyDataset", "StoreDataset", "collate_samples"]

_KEYS = ("image", "blurred", "modes", "conditioning", "d_over_r0")


def _as_tensors(sample):
    """Return the fields of a `~sunpy_momfbd.database.Sample` as float32 tensors."""
    return {key: torch.as_tensor(np.asarray(getattr(sample, key), dtype=np.float32)) for key in _KEYS}


class StoreDataset(Dataset):
    """
    Samples of a sample store (`~sunpy_momfbd.database.build_samples`).

    The zarr arrays are read lazily, one sample at a time, or loaded into memory with
    ``in_memory=True`` (fast for stores of a few thousand 64² samples).

    Parameters
    ----------
    path : str or `pathlib.Path`
        The store.
    in_memory : bool, optional
        Read everything at once (false by default).
    limit : int, optional
        Use only the first ``limit`` samples.
    """

    def __init__(self, path, *, in_memory=False, limit=None):
        self.path = str(path)
        self.group = open_store(path, ("invariant", "variant"))
        self.attrs = dict(self.group.attrs)
        written = int(self.attrs.get("n_written", 0))
        self.length = written if limit is None else min(written, int(limit))
        if self.length == 0:
            msg = f"training store {path} holds no samples"
            raise ValueError(msg)
        self._memory = {key: self.group[key][: self.length] for key in _KEYS} if in_memory else None

    @property
    def kind(self):
        """``"invariant"`` or ``"variant"``."""
        return self.attrs["kind"]

    @property
    def config(self):
        """The `~sunpy_momfbd.database.DegradationConfig` the store was built with."""
        return DegradationConfig.from_dict(self.attrs["settings"]["degradation"])

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        if not -self.length <= index < self.length:
            msg = f"sample index {index} out of range for a store of {self.length}"
            raise IndexError(msg)
        index %= self.length
        source = self._memory if self._memory is not None else self.group
        return {key: torch.as_tensor(np.asarray(source[key][index], dtype=np.float32)) for key in _KEYS}


class OnTheFlyDataset(IterableDataset):
    """
    An endless stream of training samples generated in the data loader: no file on disk.

    Objects are procedural scenes (`~sunpy_momfbd.database.procedural_patch`) or, if given,
    patches drawn at random from arrays; each is degraded with a wavefront drawn from the
    configuration, spatially variant (layered turbulence) for a fraction ``variant_fraction`` of
    the samples.

    Parameters
    ----------
    config : `~sunpy_momfbd.database.DegradationConfig`, optional
        Ranges of optics and seeing.
    variant_fraction : float, optional
        Probability that a sample is spatially variant, 0 by default (variant samples cost about a
        hundred times more to generate).
    patches : array_like, optional
        Clean patches of shape (N, size, size) to use instead of procedural scenes.
    seed : int, optional
        Base seed. Every process (DDP rank) and data-loader worker gets its own stream.
    rank : int, optional
        Process rank in distributed training, 0 by default.
    """

    def __init__(self, config=None, *, variant_fraction=0.0, patches=None, seed=0, rank=0):
        super().__init__()
        self.config = DegradationConfig() if config is None else config
        if not 0 <= variant_fraction <= 1:
            msg = f"variant_fraction must be within [0, 1], got {variant_fraction}"
            raise ValueError(msg)
        self.variant_fraction = float(variant_fraction)
        self.patches = None if patches is None else np.asarray(patches, dtype=np.float32)
        self.seed = int(seed)
        self.rank = int(rank)

    def samples(self, rng):
        """
        Generate samples forever with the given generator.

        Parameters
        ----------
        rng : `numpy.random.Generator`

        Yields
        ------
        dict of `torch.Tensor`
        """
        size = self.config.size
        count = 0
        while True:
            if count % self.config.samples_per_setup == 0:
                setup = draw_setup(self.config, rng)
            count += 1
            if self.patches is None:
                image = procedural_patch(size, rng=rng)
            else:
                image = self.patches[rng.integers(len(self.patches))]
            variant = rng.uniform() < self.variant_fraction
            yield _as_tensors(draw_sample(self.config, rng, image, variant=variant, setup=setup))

    def __iter__(self):
        worker = get_worker_info()
        worker_id = 0 if worker is None else worker.id
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2, self.rank, worker_id]))
        return self.samples(rng)


def collate_samples(samples):
    """
    Batch samples, expanding 1×1 mode grids to the largest grid present.

    Parameters
    ----------
    samples : list of dict of `torch.Tensor`

    Returns
    -------
    dict of `torch.Tensor`
        Batched ``image``, ``blurred`` (B, H, W), ``modes`` (B, n_modes, gy, gx),
        ``conditioning`` (B, n) and ``d_over_r0`` (B,).

    Raises
    ------
    ValueError
        If two samples have different non-trivial mode grids.
    """
    grids = {tuple(s["modes"].shape[-2:]) for s in samples} - {(1, 1)}
    if len(grids) > 1:
        msg = f"cannot batch samples with different mode grids {sorted(grids)}"
        raise ValueError(msg)
    grid = grids.pop() if grids else (1, 1)
    batch = {key: torch.stack([s[key] for s in samples]) for key in _KEYS if key != "modes"}
    batch["modes"] = torch.stack([s["modes"].expand(-1, *grid) for s in samples])
    return batch
