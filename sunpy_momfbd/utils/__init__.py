"""
Utilities shared across sunpy-momfbd: warning and exception classes.
"""

from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning, SunpyMomfbdWarning

__all__ = ["SunpyMomfbdUserWarning", "SunpyMomfbdWarning"]
