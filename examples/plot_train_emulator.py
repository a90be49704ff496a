"""
=========================================
Training a tiny emulator
=========================================

The neural emulator (`~sunpy_momfbd.forward.EmulatorForward`) learns spatially variant
convolution from examples that `~sunpy_momfbd.forward.PhysicalForward` computes exactly. This
example builds a tiny training set on disk, trains a tiny emulator on it for a few steps, and
reads its model card, the JSON file that says what it was trained on and how accurate it is.

Everything is tiny so that it runs in well under a minute on two CPU cores: 32 × 32 samples with
6 modes, a U-Net of width 8 and depth 2, 2 epochs of 25 steps. Such an emulator is nowhere near
accurate enough to restore anything; the user guide ("Training the neural emulator") says what a
useful one needs (a GPU, 10⁷ samples or more).
"""

# sphinx_gallery_thumbnail_number = 2

import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from sunpy_momfbd.database import DegradationConfig, StoreDataset, build_samples, build_validation
from sunpy_momfbd.forward import EmulatorForward
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.training import TrainingConfig, evaluate, train

###############################################################################
# The degradation: sampling and obscuration drawn from the configured ranges, D/r0 from 2 to 5,
# wavefronts varying over a 2 × 2 grid through layered turbulence with an isoplanatic angle of
# 16 to 64 pixels. The objects are procedural scenes (power-law fields, granulation-like cells,
# points, edges), so nothing is downloaded.

directory = Path(tempfile.mkdtemp())
degradation = DegradationConfig(
    size=32, n_modes=6, d_over_r0=(2.0, 5.0), isoplanatic_patch=(16.0, 64.0), mode_grid=(2, 2), samples_per_setup=4
)
build_samples(directory / "train.zarr", 32, config=degradation, variant=True, progress=False)
build_validation(directory / "validation.zarr", 16, config=degradation, progress=False)
training_set = StoreDataset(directory / "train.zarr", in_memory=True)
print(len(training_set), "training samples; keys of one:", sorted(training_set[0]))

###############################################################################
# A few training samples: the object and its exact spatially variant blur.

fig, axes = plt.subplots(2, 4, figsize=(10, 5), layout="constrained")
for column in range(4):
    sample = training_set[column]
    axes[0, column].imshow(sample["image"].numpy(), cmap="gray", origin="lower")
    axes[1, column].imshow(sample["blurred"].numpy(), cmap="gray", origin="lower")
    axes[0, column].set_title(f"D/r0 = {float(sample['d_over_r0']):.1f}")
axes[0, 0].set_ylabel("object")
axes[1, 0].set_ylabel("exact blur")
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])

###############################################################################
# Train: half of every batch from the store, half generated on the fly, validated after every
# epoch on the spatially variant validation store. The same settings can be written as a TOML
# file and run with ``sunpy-momfbd train --config train.toml`` (``--print-config`` lists them).

config = TrainingConfig.from_dict(
    {
        "model": {"width": 8, "depth": 2, "film_hidden": 16, "border": 4},
        "data": {
            "stores": [str(directory / "train.zarr")],
            "store_fraction": 0.5,
            "validation_store": str(directory / "validation.zarr"),
            "invariant_validation_samples": 8,
            "degradation": degradation.to_dict(),
        },
        "optim": {"epochs": 2, "steps_per_epoch": 25, "batch_size": 8, "warmup_steps": 3, "lr": 3e-3},
        # One thread: tiny tensors gain nothing from more, and lose a lot on a busy machine.
        "run": {"output": str(directory / "run"), "progress": False, "plot": False, "device": "cpu", "threads": 1},
    }
)
result = train(config)
for epoch in result.history:
    print({key: epoch[key] for key in ("epoch", "samples_seen", "train_loss") if key in epoch})

###############################################################################
# The model card, beside the safetensors weights in ``run/emulator/``: architecture, trained
# ranges, validation errors against PhysicalForward (the RMS error in units of the exact image's
# standard deviation), and what it is certified for: nothing, since a range is certified only
# with a median error of at most 3 % and a 95th percentile of at most 8 %.

card = json.loads((result.emulator / "model_card.json").read_text())
print(json.dumps({key: card[key] for key in ("architecture", "trained_ranges", "certified")}, indent=1))
print(json.dumps(card["validation"], indent=1)[:800])

###############################################################################
# Load the emulator (only ``safetensors`` reads the weights: a weights file cannot run code) and
# compare it with the exact blur on validation samples. (``emulator(obj, modes)`` conditions the
# network on ``setup``; the validation samples each have their own optics.) After 50 steps the
# network has hardly learnt to blur: its output is still much like the sharp object, which is
# what the card's validation errors say.

setup = OpticalSetup(sampling=3.0, obscuration=0.1, n_modes=degradation.n_modes)
emulator = EmulatorForward.from_pretrained(result.emulator, setup)
validation = [StoreDataset(directory / "validation.zarr")[i] for i in range(3)]
errors = evaluate(emulator, validation)["error"]
fig, axes = plt.subplots(3, 3, figsize=(7.5, 7.5), layout="constrained")
for row, (sample, error) in enumerate(zip(validation, errors, strict=True)):
    # Each sample has its own optics: condition the network on the sample's vector.
    with torch.no_grad():
        emulated = emulator.blur_conditioned(sample["image"][None], sample["modes"][None], sample["conditioning"][None])
    emulated = emulated[0].numpy()
    exact = sample["blurred"].numpy()
    for column, (title, image) in enumerate(
        [("exact", exact), ("emulated", emulated), (f"difference (error {error:.2f})", emulated - exact)]
    ):
        limit = np.abs(image).max() if column == 2 else None  # differences on a symmetric scale
        axes[row, column].imshow(
            image,
            cmap="gray" if column < 2 else "RdBu_r",
            origin="lower",
            vmin=None if limit is None else -limit,
            vmax=limit,
        )
        axes[row, column].set_title(title, fontsize=9)
        axes[row, column].set_axis_off()
print("median validation error:", np.median(errors))

plt.show()
