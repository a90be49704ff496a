"""
Utilities shared across sunpy-momfbd: warning classes and argument checks.
"""

from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning, SunpyMomfbdWarning

__all__ = ["SunpyMomfbdUserWarning", "SunpyMomfbdWarning"]
