"""
The optics core: pupils, wavefront modes, Kolmogorov statistics and PSFs.

Conventions (see the design notes): arrays are (..., y, x); `OpticalSetup.sampling` is pixels per
λ/D; modes start at Noll j = 2 (tip, tilt, then Karhunen–Loève), have unit RMS over the pupil and
coefficients in radians of phase; PSFs are centred at index ``n // 2`` and sum to one.
"""

from sunpy_momfbd.optics.diversity import defocus_coefficients, defocus_waves
from sunpy_momfbd.optics.kolmogorov import (
    even_modes,
    kl_covariance,
    kl_modes,
    kl_projection,
    kl_variance,
    random_coefficients,
    unresolved_transfer,
)
from sunpy_momfbd.optics.optical_setup import OpticalSetup
from sunpy_momfbd.optics.psf import cutoff_frequency, diffraction_psf, mtf, psf
from sunpy_momfbd.optics.pupil import aperture, pupil_coordinates
from sunpy_momfbd.optics.zernike import noll_to_nm, zernike

__all__ = [
    "OpticalSetup",
    "aperture",
    "cutoff_frequency",
    "defocus_coefficients",
    "defocus_waves",
    "diffraction_psf",
    "even_modes",
    "kl_covariance",
    "kl_modes",
    "kl_projection",
    "kl_variance",
    "mtf",
    "noll_to_nm",
    "psf",
    "pupil_coordinates",
    "random_coefficients",
    "unresolved_transfer",
    "zernike",
]
