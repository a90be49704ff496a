"""
Warning classes for sunpy-momfbd.

Emit warnings with an explicit ``stacklevel`` so that they point at the caller's code, e.g.
``warnings.warn(msg, SunpyMomfbdUserWarning, stacklevel=2)``.
"""

from astropy.utils.exceptions import AstropyWarning

__all__ = ["SunpyMomfbdUserWarning", "SunpyMomfbdWarning"]


class SunpyMomfbdWarning(AstropyWarning):
    """
    The base warning class from which all sunpy-momfbd warnings inherit.

    Any warning inheriting from this class is handled by the astropy logger, like the
    warnings of sunpy and other astropy-affiliated packages. Filter all sunpy-momfbd warnings
    at once with ``warnings.simplefilter("ignore", SunpyMomfbdWarning)``.
    """


class SunpyMomfbdUserWarning(UserWarning, SunpyMomfbdWarning):
    """
    The primary warning class for sunpy-momfbd.

    Use this for warnings the user can act on, such as an undersampled optical setup
    (fewer than two pixels per λ/D) or an input that had to be converted.
    """
