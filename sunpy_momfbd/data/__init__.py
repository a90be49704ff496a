"""
Data shipped with sunpy-momfbd.

This directory is installed as package data: emulator weights (``*.safetensors``, never pickles)
with their JSON model cards, and small test cut-outs under ``test/``. `sample_burst` makes a
realistic synthetic burst from a real DKIST/VBI image, offline (`sunpy_momfbd.data.sample`).
"""

from pathlib import Path

__all__ = ["DATA_DIR", "sample_burst", "sample_scene"]

#: Directory holding the data files installed with the package.
DATA_DIR = Path(__file__).parent


def __getattr__(name):
    # The sample data need sunpy.map and torch: import them only when asked for, so that reading
    # DATA_DIR stays cheap.
    if name in ("sample_burst", "sample_scene"):
        from sunpy_momfbd.data import sample  # noqa: PLC0415

        return getattr(sample, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
