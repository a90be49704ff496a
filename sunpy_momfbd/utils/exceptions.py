"""
Warning classes for sunpy-momfbd, in sunpy's warning hierarchy.

Emit warnings with an explicit ``stacklevel`` so that they point at the caller's code, e.g.
``warnings.warn(msg, SunpyMomfbdUserWarning, stacklevel=2)``.
"""

from sunpy.util.exceptions import SunpyUserWarning, SunpyWarning

__all__ = ["SunpyMomfbdUserWarning", "SunpyMomfbdWarning"]


class SunpyMomfbdWarning(SunpyWarning):
    """
    The base warning class from which all sunpy-momfbd warnings inherit.

    It subclasses `sunpy.util.exceptions.SunpyWarning`, so a filter on sunpy's warnings also
    covers these. Filter all sunpy-momfbd warnings at once with
    ``warnings.simplefilter("ignore", SunpyMomfbdWarning)``.
    """


class SunpyMomfbdUserWarning(SunpyUserWarning, SunpyMomfbdWarning):
    """
    The primary warning class for sunpy-momfbd.

    A `sunpy.util.exceptions.SunpyUserWarning`: use it for warnings the user can act on, such
    as an undersampled optical setup (fewer than two pixels per λ/D) or an input that had to be
    converted.
    """
