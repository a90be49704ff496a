"""
Spatially variant forward models: (object, wavefront-mode maps) → blurred image.
"""

from sunpy_momfbd.forward.base import ForwardModel, interpolate_modes, interpolation_matrix, resample_modes
from sunpy_momfbd.forward.emulator import EmulatorForward
from sunpy_momfbd.forward.physical import PhysicalForward

__all__ = [
    "EmulatorForward",
    "ForwardModel",
    "PhysicalForward",
    "interpolate_modes",
    "interpolation_matrix",
    "resample_modes",
]
