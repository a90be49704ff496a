"""
The ``info`` subcommand: versions, compute devices, instruments and installed emulators.
"""

import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable, Iterable

from sunpy_momfbd import __version__
from sunpy_momfbd.cli._base import PROG, Subcommand

__all__ = ["INFO", "INFO_SECTIONS"]

_INFO_PACKAGES = ("torch", "numpy", "scipy", "sunpy", "astropy", "ndcube", "asdf")


def _configure_info(parser):
    """No options yet: ``info`` reports the installation."""


def _distribution_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _device_lines():
    """Describe the compute devices torch can use; the CPU is always available."""
    cpu = f"cpu     {platform.machine() or 'unknown architecture'}, {os.cpu_count() or '?'} logical cores"
    try:
        import torch  # noqa: PLC0415 - CLI start-up: only ``info`` needs torch here
    except ImportError as exc:
        return [cpu, f"(torch cannot be imported: {exc})"]
    lines = [f"{cpu}, torch uses {torch.get_num_threads()} threads"]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            memory = props.total_memory / 2**30
            lines.append(f"cuda:{index}  {props.name} ({memory:.1f} GiB)")
    else:
        lines.append("cuda    not available")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        lines.append("mps     available")
    return lines


def _instrument_lines():
    """List the instrument registry: each telescope with its pupil and imagers."""
    from sunpy_momfbd.instruments import available_instruments  # noqa: PLC0415 - CLI start-up

    return _format_listing(available_instruments(), empty="(none registered)")


def _emulator_lines():
    """List the installed emulators with their trained ranges and what their model cards certify."""
    from sunpy_momfbd.forward.pretrained import installed_emulators  # noqa: PLC0415 - CLI start-up: torch

    entries = {}
    for name, card in installed_emulators().items():
        ranges = _ranges_text(card.get("trained_ranges"))
        summary = f"trained on {ranges}" if ranges else "model card without trained ranges"
        entries[name] = f"{summary}; certified: {_certified_text(card.get('certified'))}"
    return _format_listing(entries, empty="(none installed)")


def _ranges_text(ranges):
    return ", ".join(f"{k} {v[0]:g}-{v[1]:g}" for k, v in (ranges or {}).items())


def _certified_text(boxes):
    """Describe the set-ups a model card certifies, or say why ``forward="auto"`` never uses the emulator."""
    if not boxes:
        return "none (forward='auto' uses the physical model; forward='emulator' is unverified)"
    return " | ".join(_ranges_text(box["ranges"]) or "all set-ups" for box in boxes)


def _format_listing(items, *, empty):
    if isinstance(items, dict):
        lines = [f"{name}: {text}" for name, text in items.items()]
    else:
        lines = [str(item) for item in items]
    return lines or [empty]


#: Sections of ``sunpy-momfbd info`` after the versions: (title, function returning lines).
INFO_SECTIONS: list[tuple[str, Callable[[], Iterable[str]]]] = [
    ("Compute devices", _device_lines),
    ("Instruments", _instrument_lines),
    ("Emulators", _emulator_lines),
]


def _run_info(args):
    print(f"{PROG} {__version__}")
    print()
    print("Versions:")
    print(f"  {'python':<10}{platform.python_version()} ({sys.executable})")
    for name in _INFO_PACKAGES:
        print(f"  {name:<10}{_distribution_version(name)}")
    for title, lines in INFO_SECTIONS:
        print()
        print(f"{title}:")
        for line in lines():
            print(f"  {line}")
    return 0


INFO = Subcommand(
    help="show versions, compute devices, instruments and installed emulators",
    configure=_configure_info,
    run=_run_info,
)
