"""
Command-line arguments shared by the restoring subcommands, and their conversion into `~sunpy_momfbd.deconvolve`'s keywords.

Every conversion raises `~sunpy_momfbd.cli.CLIError` with a message naming the flag.
"""

import ast

from sunpy_momfbd.cli._base import CLIError

__all__ = [
    "add_input_arguments",
    "add_optics_arguments",
    "add_solver_arguments",
    "diversity",
    "input_options",
    "key_value",
    "mode_grid",
    "pixel_scale",
    "quantity",
    "solver_options",
    "telescope",
]


def add_solver_arguments(parser):
    """Add the forward-model, wavefront-grid, iteration, device and output flags."""
    parser.add_argument(
        "--forward",
        choices=("auto", "physical", "emulator"),
        default="auto",
        help="forward model (default auto: the emulator on a GPU where certified, else physical)",
    )
    parser.add_argument(
        "--mode-grid",
        metavar="N|GYxGX",
        help="grid of the wavefront mode maps: auto (default, from the field and patch size), N or GYxGX",
    )
    parser.add_argument("--iterations", type=int, metavar="N", help="iteration cap of the joint refinement")
    parser.add_argument("--device", default="auto", help="torch device (default auto: cuda, mps, then cpu)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="further solver setting, e.g. --option init_iterations=10 (repeatable)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_input_arguments(parser):
    """Add the flags that choose HDUs and prepare the frames (invalid pixels, selection, alignment)."""
    parser.add_argument("--hdu", metavar="HDU[,HDU...]", help="HDUs holding frames, by index or EXTNAME (default: all)")
    parser.add_argument("--fill-invalid", action="store_true", help="give NaN/inf pixels no weight, as masked ones")
    parser.add_argument("--drop-bad-frames", action="store_true", help="drop blank/constant frames with a warning")
    parser.add_argument("--select", type=int, metavar="N", help="keep the N frames of highest contrast")
    parser.add_argument(
        "--align", choices=("subpixel", "pixel"), help="co-align the frames on the first one before the solve"
    )


def add_optics_arguments(parser):
    """Add the flags that override the optics found in the headers."""
    parser.add_argument("--telescope", help="telescope name, overriding TELESCOP (see 'sunpy-momfbd info')")
    parser.add_argument("--diameter", metavar="QTY", help="pupil diameter of a custom telescope, e.g. 1.5m")
    parser.add_argument("--obscuration", metavar="QTY", help="central obscuration of a custom telescope, e.g. 0.4m")
    parser.add_argument("--wavelength", metavar="QTY", help="wavelength, overriding WAVELNTH, e.g. 630.2nm")
    parser.add_argument("--pixel-scale", metavar="ARCSEC", help="plate scale in arcsec per pixel, overriding CDELT")


def input_options(args):
    """Return the keyword arguments of deconvolve given by the flags of `add_input_arguments`."""
    hdu = None
    if args.hdu is not None:
        hdu = [int(h) if h.strip().lstrip("-").isdigit() else h.strip() for h in args.hdu.split(",")]
    return {
        "hdu": hdu,
        "fill_invalid": args.fill_invalid,
        "drop_bad_frames": args.drop_bad_frames,
        "select": args.select,
        "align": args.align or False,
    }


def quantity(text, what, physical_type):
    """Read ``text`` (e.g. ``"1.5m"``) as a `~astropy.units.Quantity` of ``physical_type``, for flag ``what``."""
    import astropy.units as u  # noqa: PLC0415 - CLI start-up: astropy.units takes half a second

    try:
        value = u.Quantity(text)
    except (TypeError, ValueError):
        raise CLIError(f"{what}: cannot read {text!r} as a quantity with a unit (e.g. 1.5m)") from None
    if value.unit.physical_type != physical_type:
        raise CLIError(f"{what}: {text!r} is not a {physical_type}")
    return value


def key_value(text, what):
    """Split ``NAME=VALUE`` of flag ``what`` into its two non-empty parts."""
    if "=" not in text:
        raise CLIError(f"{what} must look like NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if not key or not value:
        raise CLIError(f"{what} must look like NAME=VALUE, got {text!r}")
    return key, value


def mode_grid(text):
    """Read ``--mode-grid``: None (not given), ``"auto"``, N or a (GY, GX) tuple from ``GYxGX``."""
    if text is None or text.lower() == "auto":
        return None if text is None else "auto"
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise CLIError(f"--mode-grid must be auto, N or GYxGX (e.g. 3 or 2x4), got {text!r}") from None
    if len(values) not in (1, 2):
        raise CLIError(f"--mode-grid must be auto, N or GYxGX, got {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


def solver_options(items):
    """Return the solver settings of ``--option KEY=VALUE`` (Python literals, else strings), checked."""
    # CLI start-up: checking the options imports the solver, and with it torch.
    from sunpy_momfbd.options import check_options  # noqa: PLC0415

    options = {}
    for item in items:
        key, value = key_value(item, "--option")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            options[key] = value
    try:
        check_options(**options)
    except (TypeError, ValueError) as err:
        raise CLIError(f"--option: {err}") from None
    return options


def diversity(items):
    """Return the `~sunpy_momfbd.io.PhaseDiversity` of every ``--diversity NAME=OBJECT:DEFOCUS[:F]``."""
    from sunpy_momfbd.optics.diversity import PhaseDiversity, waves  # noqa: PLC0415 - CLI start-up: torch

    result = {}
    for item in items:
        name, spec = key_value(item, "--diversity")
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise CLIError(f"--diversity must look like NAME=OBJECT:DEFOCUS[:F], got {item!r}")
        target, defocus = parts[0], parts[1].strip()
        text = defocus.removesuffix("waves").removesuffix("wave").strip()
        try:
            value = float(text) * waves
        except ValueError:
            value = quantity(defocus, "--diversity defocus", "length")
        focal_ratio = None
        if len(parts) == 3:
            try:
                focal_ratio = float(parts[2].lower().removeprefix("f/").removeprefix("f"))
            except ValueError:
                raise CLIError(f"--diversity focal ratio must be a number, got {parts[2]!r}") from None
        result[name] = PhaseDiversity(target, value, focal_ratio=focal_ratio)
    return result


def telescope(args):
    """Return ``--telescope``, or a custom `~sunpy_momfbd.instruments.Telescope` from ``--diameter``/``--obscuration``."""
    if args.diameter is None:
        if args.obscuration is not None:
            raise CLIError("--obscuration needs --diameter (a custom telescope)")
        return args.telescope
    from sunpy_momfbd.instruments import Telescope  # noqa: PLC0415 - CLI start-up: torch

    diameter = quantity(args.diameter, "--diameter", "length")
    obscuration = quantity(args.obscuration, "--obscuration", "length") if args.obscuration else 0 * diameter.unit
    return Telescope(diameter=diameter, obscuration=obscuration, name=args.telescope or "custom")


def pixel_scale(text):
    """Read ``--pixel-scale`` (arcsec per pixel) as a `~astropy.units.Quantity`; None if not given."""
    if text is None:
        return None
    import astropy.units as u  # noqa: PLC0415 - CLI start-up: astropy.units takes half a second

    try:
        return float(text) * u.arcsec / u.pix
    except ValueError:
        raise CLIError(f"--pixel-scale must be a number of arcsec per pixel, got {text!r}") from None
