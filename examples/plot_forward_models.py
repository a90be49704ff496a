"""
=====================================================
The two forward models: accuracy and time
=====================================================

A forward model blurs an object with a wavefront that varies over the field. We compare the two
models of the package on the same object and wavefront:

* `~sunpy_momfbd.forward.PhysicalForward` computes exact PSFs at a grid of nodes and blends them;
* `~sunpy_momfbd.forward.EmulatorForward` is the U-Net emulator shipped with the package.

Both are judged against the **per-pixel truth**: a brute-force sum in which every source pixel
is spread by the PSF of its own (bilinearly interpolated) wavefront, the object-space convention
of the package. The field is 64 × 64 pixels of the sample DKIST/VBI scene so that the brute-force
sum (4096 PSFs) takes a few seconds. Times are those of this machine, one call after a warm-up.
"""

# sphinx_gallery_thumbnail_number = 1

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import astropy.units as u

from sunpy_momfbd.data import sample_scene
from sunpy_momfbd.forward import EmulatorForward, PhysicalForward
from sunpy_momfbd.instruments import optical_setup
from sunpy_momfbd.optics import psf
from sunpy_momfbd.simulate import turbulent_modes

###############################################################################
# The VBI optics (2.29 pixels per λ/D), the object, and one frame's wavefront through layered
# turbulence with D/r0 = 6 and an isoplanatic angle of 30 pixels, on a 4 × 4 grid.

size, d_over_r0 = 64, 6.0
setup = optical_setup("DKIST", 450.4 * u.nm, 0.0101236 * u.arcsec / u.pix)
obj = torch.from_numpy(sample_scene(size=size).data.astype(np.float64))[None]
modes = torch.from_numpy(turbulent_modes(1, setup.n_modes, (size, size), d_over_r0, 30.0, 4, rng=5))

###############################################################################
# The per-pixel truth: each source pixel's PSF added into the image at its position. The sum runs
# over the PSF's offsets (one array operation each), not over the pixels.

npix = PhysicalForward(setup).psf_size
per_pixel = F.interpolate(modes, size=(size, size), mode="bilinear", align_corners=False)[0]
kernels = psf(per_pixel.permute(1, 2, 0), setup, npix)  # (y, x, npix, npix)
canvas = torch.zeros(size + npix, size + npix, dtype=torch.float64)
for dy in range(npix):
    for dx in range(npix):
        canvas[dy : dy + size, dx : dx + size] += obj[0] * kernels[:, :, dy, dx]
truth = canvas[npix // 2 : npix // 2 + size, npix // 2 : npix // 2 + size].numpy()

###############################################################################
# The models: PhysicalForward with its default nodes and with nodes 4 pixels apart, and the
# shipped emulator. Its model card certifies no set-up (it was trained briefly on a CPU), so we
# expect it to be far less accurate; ``forward="auto"`` would not use it.

models = {
    "PhysicalForward (default nodes)": PhysicalForward(setup),
    "PhysicalForward (nodes 4 px apart)": PhysicalForward(setup, node_spacing=4),
    "EmulatorForward (shipped default)": EmulatorForward.from_pretrained("default", setup),
}
print("emulator certified for this set-up:", models["EmulatorForward (shipped default)"].is_certified(setup, d_over_r0))

###############################################################################
# Error over the whole field (all three models and the truth take the object as zero outside
# the array, so the borders compare like with like), as RMS difference relative to the truth's
# standard deviation, and the time of one call without gradients.

images, rows = {}, []
with torch.no_grad():
    for name, model in models.items():
        dtype = next(iter(model.parameters()), obj).dtype
        model(obj.to(dtype), modes.to(dtype))  # warm-up
        start = time.perf_counter()
        image = model(obj.to(dtype), modes.to(dtype))[0].double().numpy()
        seconds = time.perf_counter() - start
        images[name] = image
        error = np.sqrt(np.mean((image - truth) ** 2)) / truth.std()
        rows.append((name, error, seconds))
        print(f"{name:>36}: error {error:.4f}, {1e3 * seconds:.0f} ms")

###############################################################################
# The truth and each model's difference from it, on one colour scale (the truth's standard
# deviation is 1 on this scale).

fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), layout="constrained")
axes[0].imshow(truth, cmap="gray", origin="lower")
axes[0].set_title("per-pixel truth")
scale = truth.std()
for ax, (name, image) in zip(axes[1:], images.items(), strict=True):
    shown = ax.imshow((image - truth) / scale, cmap="RdBu_r", origin="lower", vmin=-0.5, vmax=0.5)
    ax.set_title(name.replace(" (", "\n("), fontsize=9)
fig.colorbar(shown, ax=axes[1:], label="(model - truth) / std(truth)", shrink=0.8)
for ax in axes:
    ax.set_axis_off()

###############################################################################
# Accuracy against time on this machine.

fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for name, error, seconds in rows:
    ax.loglog(1e3 * seconds, error, "o", label=name)
ax.set_xlabel("time of one call [ms]")
ax.set_ylabel("relative RMS error")
ax.legend(fontsize=8)

plt.show()
