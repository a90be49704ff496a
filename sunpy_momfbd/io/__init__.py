"""
The sunpy layer: user input to Burst, Solution to NDCube/NDCollection, and ASDF/FITS files.
"""

from sunpy_momfbd.io.files import check_output_path, load, load_series, save, to_fits_hdulist
from sunpy_momfbd.io.fits_frames import group_files, read_fits_frames, read_fits_map
from sunpy_momfbd.io.maps import SunpyAxisLabelPlotter, to_map
from sunpy_momfbd.io.meta import ResultMeta
from sunpy_momfbd.io.outputs import solution_to_ndcube
from sunpy_momfbd.io.prepare import PreparedBurst, PreparedChannel, prepare_burst
from sunpy_momfbd.optics.diversity import PhaseDiversity, waves

__all__ = [
    "PhaseDiversity",
    "PreparedBurst",
    "PreparedChannel",
    "ResultMeta",
    "SunpyAxisLabelPlotter",
    "check_output_path",
    "group_files",
    "load",
    "load_series",
    "prepare_burst",
    "read_fits_frames",
    "read_fits_map",
    "save",
    "solution_to_ndcube",
    "to_fits_hdulist",
    "to_map",
    "waves",
]
