"""
Training sets for the emulator: image sources, degradation, zarr stores and datasets.

* `~sunpy_momfbd.database.sources`: image files, solar arrays and procedural scenes → patches;
* `~sunpy_momfbd.database.degrade`: patches → (object, wavefront, optics, blurred image) samples;
* `~sunpy_momfbd.database.store`: chunked, resumable zarr stores of patches and samples;
* `~sunpy_momfbd.database.datasets`: torch datasets over stores or generating samples on the fly.
"""

from sunpy_momfbd.database.datasets import OnTheFlyDataset, StoreDataset, collate_samples
from sunpy_momfbd.database.degrade import (
    DegradationConfig,
    Sample,
    apodise,
    draw_sample,
    draw_setup,
    draw_wavefront,
    exact_blur,
)
from sunpy_momfbd.database.sources import (
    PROCEDURAL_KINDS,
    array_patches,
    cellular_pattern,
    edges_and_lines,
    find_images,
    image_patches,
    point_sources,
    power_law_field,
    procedural_patch,
    read_image,
)
from sunpy_momfbd.database.store import ReshapeReport, build_samples, build_validation, open_store, reshape_images

__all__ = [
    "PROCEDURAL_KINDS",
    "DegradationConfig",
    "OnTheFlyDataset",
    "ReshapeReport",
    "Sample",
    "StoreDataset",
    "apodise",
    "array_patches",
    "build_samples",
    "build_validation",
    "cellular_pattern",
    "collate_samples",
    "draw_sample",
    "draw_setup",
    "draw_wavefront",
    "edges_and_lines",
    "exact_blur",
    "find_images",
    "image_patches",
    "open_store",
    "point_sources",
    "power_law_field",
    "procedural_patch",
    "read_image",
    "reshape_images",
]
