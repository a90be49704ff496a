"""
sunpy-momfbd: multi-object multi-frame blind deconvolution of solar images.

The whole field is restored at once with a spatially variant forward model: a neural emulator
of spatially variant convolution and an exact physical model that validates it.

Importing this package is deliberately light (it does not import torch); the subpackages
load what they need.
"""

import importlib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _metadata_version

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - only without a build (e.g. a bare source checkout)
    try:
        __version__ = _metadata_version("sunpy-momfbd")
    except PackageNotFoundError:
        __version__ = "0.1.dev0"

__all__ = ["__version__", "deconvolve", "deconvolve_many", "load", "load_series", "save", "to_map"]

#: Headline entry points, imported on first use so that ``import sunpy_momfbd`` stays light.
_LAZY = {
    "deconvolve": "sunpy_momfbd.api",
    "deconvolve_many": "sunpy_momfbd.parallel",
    "load": "sunpy_momfbd.io",
    "load_series": "sunpy_momfbd.io",
    "save": "sunpy_momfbd.io",
    "to_map": "sunpy_momfbd.io",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__():
    return sorted([*globals(), *_LAZY])
