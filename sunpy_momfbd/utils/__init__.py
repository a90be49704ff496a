"""
Utilities shared across sunpy-momfbd: warning classes, argument checks and the device resolver.
"""

from sunpy_momfbd.utils.device import resolve_device
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning, SunpyMomfbdWarning

__all__ = ["SunpyMomfbdUserWarning", "SunpyMomfbdWarning", "resolve_device"]
