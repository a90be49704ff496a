"""
================================================================
From FITS files with SOLARNET headers to a restored FITS file
================================================================

Real bursts arrive as FITS files, one frame each, with headers that follow the SOLARNET
conventions. This example writes a small burst as DKIST level-1 style files
(``WAVELNTH = 450.4`` with ``WAVEUNIT = -9``, a power of ten), shows how the optics are found
from the headers and the instrument registry, overrides the telescope, restores the files, and
reads the restored FITS file back as a sunpy Map with its provenance keywords.

The burst is the sample DKIST/VBI burst cut to 64 × 64 pixels and 4 frames, restored with 15
iterations, so that the example runs in well under a minute.
"""

# sphinx_gallery_thumbnail_number = 1

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import astropy.units as u
from astropy.io import fits

import sunpy.map

from sunpy_momfbd import deconvolve, save
from sunpy_momfbd.data import sample_burst
from sunpy_momfbd.instruments import Telescope, available_instruments, match_metadata
from sunpy_momfbd.io import prepare_burst, read_fits_map

###############################################################################
# Write the frames as FITS files whose headers carry the wavelength the SOLARNET way, in nm with
# ``WAVEUNIT = -9`` (10⁻⁹ m), as SST and DKIST level-1 files do.

directory = Path(tempfile.mkdtemp())
files = []
for index, frame in enumerate(sample_burst(n_frames=4, size=64)):
    header = fits.Header(frame.fits_header)
    header["WAVELNTH"] = (450.4, "[nm] wavelength")
    header["WAVEUNIT"] = (-9, "WAVELNTH in units of 10**WAVEUNIT m")
    header["SOLARNET"] = 1
    files.append(directory / f"vbi_{index:03d}.fits")
    fits.writeto(files[-1], frame.data, header)
print([f.name for f in files])

###############################################################################
# sunpy reads ``WAVEUNIT = -9`` as a unit it cannot interpret; `sunpy_momfbd.io.read_fits_map`
# (what `~sunpy_momfbd.deconvolve` uses for files) repairs the header first.

print("plain sunpy:  ", sunpy.map.Map(files[0]).meta["waveunit"])
print("sunpy-momfbd: ", read_fits_map(files[0]).wavelength)

###############################################################################
# The telescope is matched on ``TELESCOP`` (with aliases), or else ``INSTRUME``, in the registry
# of `sunpy_momfbd.instruments`; each value there has a source in the module documentation.

telescope, instrument = match_metadata(fits.getheader(files[0]))
print(telescope.name, telescope.diameter, instrument.name if instrument else None)
for name, line in available_instruments().items():
    print(f"{name:>7}: {line}")

###############################################################################
# `~sunpy_momfbd.io.prepare_burst` reads and checks the frames as `~sunpy_momfbd.deconvolve`
# does, without solving: here it shows the optics found in the headers, and how they change when
# the telescope is overridden (a 1.5 m pupil with a 0.4 m central obscuration, say). The
# sampling is the number of pixels per λ/D.

for override in (None, Telescope(diameter=1.5 * u.m, obscuration=0.4 * u.m, name="a 1.5 m telescope")):
    channel = prepare_burst(files, telescope=override).channels[0]
    print(f"{channel.telescope.name}: {channel.wavelength}, {channel.pixel_scale}, {channel.setup}")

###############################################################################
# An unknown telescope is an error that says which ones are known, before anything is read.

try:
    prepare_burst(files, telescope="Hubble")
except ValueError as error:
    print(error)

###############################################################################
# Restore the files and save the result as FITS: the object with its WCS, the instrument keys and
# SOLARNET provenance keywords (``PRSTEPn``, ``PRPROCn``, ``PRPVERn``, ...).

result = deconvolve(files, n_iterations=15, init_iterations=3, progress=False)
save(result, directory / "restored.fits")
restored = sunpy.map.Map(directory / "restored.fits")
print({key: restored.meta[key] for key in restored.meta if key.startswith(("prstep", "prproc"))})

###############################################################################
# The restored map and the first frame, with sunpy's plotting on WCS axes.

fig = plt.figure(figsize=(10, 4.5), layout="constrained")
first = read_fits_map(files[0])
for column, (title, item) in enumerate([("frame 0", first), ("restored", restored)], start=1):
    ax = fig.add_subplot(1, 2, column, projection=item)
    item.plot(axes=ax, cmap="gray", title=title)

plt.show()
