"""
The sunpy layer: user input to Burst, Solution to NDCube/NDCollection, and ASDF/FITS files.
"""

from sunpy_momfbd.io.files import check_output_path, load, save, to_fits_hdulist
from sunpy_momfbd.io.inputs import (
    PhaseDiversity,
    PreparedBurst,
    PreparedChannel,
    group_files,
    prepare_burst,
    read_fits_map,
    waves,
)
from sunpy_momfbd.io.outputs import solution_to_ndcube

__all__ = [
    "PhaseDiversity",
    "PreparedBurst",
    "PreparedChannel",
    "check_output_path",
    "group_files",
    "load",
    "prepare_burst",
    "read_fits_map",
    "save",
    "solution_to_ndcube",
    "to_fits_hdulist",
    "waves",
]
