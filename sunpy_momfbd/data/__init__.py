"""
Data shipped with sunpy-momfbd.

This directory is installed as package data: emulator weights (``*.safetensors``, never pickles)
with their JSON model cards, and small test cut-outs under ``test/``.
"""

from pathlib import Path

__all__ = ["DATA_DIR"]

#: Directory holding the data files installed with the package.
DATA_DIR = Path(__file__).parent
