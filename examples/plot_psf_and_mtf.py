"""
==============================================
Diffraction PSF and MTF of an obscured pupil
==============================================

How a central obscuration changes the diffraction-limited PSF and MTF.

We compare an unobscured pupil (a refractor such as the SST, or an off-axis telescope such as
DKIST) with a GREGOR-like on-axis telescope whose central obscuration is 27% of the pupil
diameter, both sampled at 2.5 pixels per λ/D.
"""

import matplotlib.pyplot as plt
import numpy as np

from sunpy_momfbd.optics import OpticalSetup, aperture, cutoff_frequency, diffraction_psf, mtf

###############################################################################
# Two optical set-ups that differ only in the central obscuration. The sampling (pixels per
# λ/D) and the pupil shape are all the PSF depends on in pixel units.

npix = 128
setups = {
    "unobscured": OpticalSetup(sampling=2.5, obscuration=0.0),
    "obscured (0.27)": OpticalSetup(sampling=2.5, obscuration=0.27),
}

###############################################################################
# The pupils, the diffraction-limited PSFs (unit sum, centred at ``npix // 2``) and their MTFs.

pupils = {name: aperture(64, obscuration=setup.obscuration) for name, setup in setups.items()}
psfs = {name: diffraction_psf(setup, npix) for name, setup in setups.items()}
mtfs = {name: mtf(kernel) for name, kernel in psfs.items()}

for name, kernel in psfs.items():
    peak = tuple(int(i) for i in np.unravel_index(kernel.argmax(), kernel.shape))
    print(f"{name:>16}: sum = {kernel.sum():.6f}, peak = {kernel.max():.4f} at {peak}")

###############################################################################
# Pupils and PSFs (logarithmic scale). The obscuration moves light from the core into the
# rings.

fig, axes = plt.subplots(2, 2, figsize=(8, 7), layout="constrained")
extent = np.array([-npix // 2, npix - npix // 2, -npix // 2, npix - npix // 2]) / 2.5
for column, name in enumerate(setups):
    axes[0, column].imshow(pupils[name], cmap="gray", origin="lower")
    axes[0, column].set_title(f"pupil, {name}")
    axes[0, column].set_axis_off()
    image = axes[1, column].imshow(
        np.log10(psfs[name] / psfs[name].max() + 1e-8), vmin=-5, vmax=0, origin="lower", extent=extent
    )
    axes[1, column].set_xlim(-6, 6)
    axes[1, column].set_ylim(-6, 6)
    axes[1, column].set_xlabel("x [λ/D]")
    axes[1, column].set_ylabel("y [λ/D]")
    axes[1, column].set_title(f"PSF, {name}")
fig.colorbar(image, ax=axes[1, :], label="log10 (PSF / peak)", shrink=0.8)

###############################################################################
# Azimuthal cuts through the MTFs. Both vanish at the diffraction cutoff D/λ = 1 / sampling
# cycles per pixel; the obscured pupil transfers less contrast at intermediate frequencies.

frequency = (np.arange(npix) - npix // 2) / npix
positive = frequency >= 0
fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
for name, transfer in mtfs.items():
    ax.plot(frequency[positive], transfer[npix // 2, positive], label=name)
cutoff = cutoff_frequency(setups["unobscured"])
ax.axvline(cutoff, color="gray", linestyle="--", label=f"cutoff D/λ = {cutoff:.2f} cycles/pixel")
ax.set_xlabel("spatial frequency [cycles / pixel]")
ax.set_ylabel("MTF")
ax.set_xlim(0, 0.5)
ax.set_ylim(0, 1.02)
ax.legend()

plt.show()
