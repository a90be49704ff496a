"""
Synthetic data: bursts seen through layered Kolmogorov turbulence, and the offline sample burst.

`~sunpy_momfbd.simulate.burst` simulates on arrays (tests, benchmarks, the emulator's training
sets); `~sunpy_momfbd.simulate.sample` dresses a simulated burst of a real DKIST/VBI image as
sunpy Maps (its functions are also `sunpy_momfbd.data.sample_burst` and ``sample_scene``).
"""

from sunpy_momfbd.simulate.burst import (
    DEFAULT_LAYERS,
    SimulatedBurst,
    phase_screen,
    simulate_burst,
    simulate_frames,
    turbulent_modes,
)

__all__ = [
    "DEFAULT_LAYERS",
    "SimulatedBurst",
    "phase_screen",
    "simulate_burst",
    "simulate_frames",
    "turbulent_modes",
]
