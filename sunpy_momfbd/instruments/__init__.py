"""
A registry of ground-based solar telescopes and imagers, and the mapping from FITS metadata to optics.

MOMFBD needs three numbers per channel to model its point-spread function: the pupil diameter,
its central obscuration and the sampling (pixels per λ/D), which follows from the wavelength and
the plate scale. The telescope's pupil comes from this registry (matched on ``TELESCOP`` or
``INSTRUME``), the wavelength and the plate scale from each frame's metadata. Every registry value
carries its source below; values marked *unverified* come from secondary sources and should be
checked (or overridden with ``telescope=Telescope(...)``) before they are trusted.

.. list-table:: Telescopes
   :header-rows: 1

   * - name
     - pupil diameter
     - central obscuration
     - source
   * - SST
     - 0.97 m
     - none (refractor)
     - ISP-SST/sstred ``TELESCOPE_D=0.97`` (``red__initialize.pro``); Kleint et al. 2020, A&A 641, A27
   * - GREGOR
     - 1.44 m (1.5 m primary)
     - 0.40 m (*unverified*)
     - aasensio/torchmfbd ``reproducibility/hifi/*.yaml``; AIP GREGOR pages
   * - DKIST
     - 4.0 m clear (off-axis)
     - none
     - Rimmele et al. 2020, Sol. Phys. 295, 172; NSO DKIST FAQ
   * - GST
     - 1.6 m clear (off-axis)
     - none
     - Goode Solar Telescope descriptions (BBSO; "unobstructed" off-axis Gregorian)
   * - NVST
     - 0.98 m ("pure aperture")
     - none assumed (*unverified*)
     - Xu et al. 2013, IAU Symp. 300 (doi:10.1017/S1743921313010831); Liu et al. 2014, RAA 14, 705
   * - DST
     - 0.76 m entrance window
     - none assumed (*unverified*)
     - NMSU Dunn Solar Telescope pages
   * - VTT
     - 0.70 m primary
     - none assumed (*unverified*)
     - IAC and AIP VTT pages

.. list-table:: Instruments (typical plate scales; the frame's own ``CDELT`` is always used when present)
   :header-rows: 1

   * - name
     - telescope
     - plate scale ["/px]
     - source
   * - CRISP
     - SST
     - 0.0592 (to 2022-08-18), 0.044 (Ximea cameras, from 2022-08-19); CRISP2 0.050
     - sstred ``red_setupworkdir_crisp2.pro``, ``red_dates.pro``; Löfdahl et al. 2021, A&A 653, A68
   * - CHROMIS
     - SST
     - 0.0379 (2016 cameras), 0.0355 (from 2025-04-01)
     - sstred ``red_setupworkdir_chromis.pro``, ``red_dates.pro``
   * - HiFI+
     - GREGOR
     - Ca II H 0.02489, G band 0.02761, TiO 0.04979
     - torchmfbd configuration files; wavelengths from Denker et al. 2023, JATIS 9, 015001
   * - VBI
     - DKIST
     - blue 0.011 (design), 0.0101236 (a level-1 header); red 0.017 (design)
     - NSO VBI wiki; header of sunkit-image's ``dkist_photosphere.fits``
   * - BFI
     - GST
     - ~0.034 (*unverified*)
     - TiO BFI at GST, arXiv:2008.12779
   * - NVST
     - NVST
     - TiO ~0.052, Hα ~0.136 (*unverified*)
     - Chen et al. 2016, ATI 13, 75 (channels)
   * - ROSA
     - DST
     - Zyla 0.0845, iXon 0.06 (*unverified*)
     - NMSU ROSA data-model page (solardisk.nmsu.edu/docs/rosa)
   * - IBIS
     - DST
     - 0.098 (*unverified*)
     - Arcetri IBIS page; Ermolli et al. 2022, A&A 661, A74

`~sunpy_momfbd.instruments.registry` holds the registry and `~sunpy_momfbd.instruments.headers`
reads what a frame's header says.
"""

from sunpy_momfbd.instruments.headers import header_value, wavelength_from_meta
from sunpy_momfbd.instruments.registry import (
    INSTRUMENTS,
    TELESCOPES,
    Instrument,
    Telescope,
    available_instruments,
    get_instrument,
    get_telescope,
    match_metadata,
    optical_setup,
)

__all__ = [
    "INSTRUMENTS",
    "TELESCOPES",
    "Instrument",
    "Telescope",
    "available_instruments",
    "get_instrument",
    "get_telescope",
    "header_value",
    "match_metadata",
    "optical_setup",
    "wavelength_from_meta",
]
