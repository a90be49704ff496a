"""
The MOMFBD solver on plain tensors: problem description, optimisation and solution.
"""

from sunpy_momfbd.solver.problem import Burst, Channel
from sunpy_momfbd.solver.solve import Solution, SolverSettings, auto_mode_grid, solve
from sunpy_momfbd.utils.device import resolve_device  # the solver's device names

__all__ = ["Burst", "Channel", "Solution", "SolverSettings", "auto_mode_grid", "resolve_device", "solve"]
