"""
The high-level entry point: `deconvolve` a burst given as sunpy/ndcube objects, files or arrays.
"""

from sunpy import log

from sunpy_momfbd import solver
from sunpy_momfbd.forward.select import choose_forward
from sunpy_momfbd.io import prepare_burst, solution_to_ndcube, to_map
from sunpy_momfbd.options import FORWARD_CHOICES, check_options

__all__ = ["FORWARD_CHOICES", "OUTPUT_CHOICES", "deconvolve"]

#: Accepted values of ``output``.
OUTPUT_CHOICES = ("ndcube", "map")


def deconvolve(
    data,
    *,
    telescope=None,
    wavelength=None,
    pixel_scale=None,
    optics=None,
    diversity=None,
    forward="auto",
    mode_grid=None,
    n_iterations=None,
    n_modes=44,
    device="auto",
    progress=True,
    output="ndcube",
    hdu=None,
    fill_invalid=False,
    drop_bad_frames=False,
    select=None,
    align=False,
    **solver_options,
):
    """
    Restore a burst of short-exposure frames by multi-object multi-frame blind deconvolution.

    The whole field is solved at once with a spatially variant forward model (no mosaic of
    isoplanatic patches). Optics come from the frames' metadata and the instrument registry
    (`sunpy_momfbd.instruments`): the telescope from ``TELESCOP``/``INSTRUME``, the wavelength from
    ``WAVELNTH`` (with ``WAVEUNIT``, SOLARNET powers of ten included) and the plate scale from
    the WCS; any of them can be overridden by keyword.

    Parameters
    ----------
    data : list of `~sunpy.map.GenericMap`, `~sunpy.map.MapSequence`, `~ndcube.NDCube`, `~ndcube.NDCubeSequence`, list of paths, `numpy.ndarray` or dict
        The frames of one object: a list/tuple of Maps, a MapSequence, a 3-D NDCube with array
        axes (frame, y, x), an NDCubeSequence of 2-D or 3-D cubes, a list of FITS files (one
        frame each), or a 3-D array (or list of 2-D arrays) with explicit optics. For several
        objects, or with a phase-diversity channel, a dict ``{name: frames}``; frame i of every
        channel must be simultaneous. The input is never modified.
    telescope : `~sunpy_momfbd.instruments.Telescope` or str, optional
        Override the telescope found in the metadata, e.g.
        ``Telescope(diameter=1.5 * u.m, obscuration=0.4 * u.m)`` or ``"GREGOR"``.
    wavelength : `~astropy.units.Quantity` or dict, optional
        Override (or supply) the wavelength; a dict gives one per channel.
    pixel_scale : `~astropy.units.Quantity` or dict, optional
        Override (or supply) the plate scale, e.g. ``0.044 * u.arcsec / u.pix``.
    optics : `~sunpy_momfbd.optics.OpticalSetup` or dict, optional
        The complete optics of each channel; replaces telescope, wavelength and plate scale.
    diversity : dict of str to `~sunpy_momfbd.io.PhaseDiversity`, optional
        Channels of ``data`` that are phase-diversity cameras: the object they see and their
        defocus, e.g. ``{"pd": PhaseDiversity("wb", 1.0 * waves)}`` or
        ``PhaseDiversity("wb", 4.4 * u.mm, focal_ratio=44)``.
    forward : {"auto", "emulator", "physical"}, `~sunpy_momfbd.forward.ForwardModel` or callable, optional
        The forward model. "auto" (default) uses the trained emulator only on a CUDA GPU and only
        where its model card certifies the optical set-up, and otherwise
        `~sunpy_momfbd.forward.PhysicalForward`; "emulator" and "physical" force one; a model
        instance is used as is (one set-up), a ``callable(setup)`` builds one per channel. The
        choice and its reason are recorded in the provenance.
    mode_grid : "auto", int or tuple of int, optional
        Grid (gy, gx) of the wavefront mode maps over the field. By default ("auto", or None) the
        grid points are as far apart as the centres of the solver's wavefront patches (about a
        third of ``patch_size``), so a field several patches wide is solved with spatially variant
        wavefronts and a field about one patch wide with one wavefront per frame; the grid used is
        recorded in the provenance. See `~sunpy_momfbd.solver.auto_mode_grid`.
    n_iterations : int, optional
        Iteration cap of the joint refinement; the solver's default if None.
    n_modes : int, optional
        Number of wavefront modes (tip, tilt, Karhunen–Loève), 44 by default.
    device : str, optional
        "auto" (default: CUDA, then MPS, then CPU) or a torch device name.
    progress : bool, optional
        Show progress bars (default true).
    output : {"ndcube", "map"}, optional
        "ndcube" (default) returns an NDCube (NDCollection for several objects); "map" returns a
        `~sunpy.map.GenericMap` (a dict of Maps for several objects), as `~sunpy_momfbd.to_map`
        makes it.
    hdu : int, str or list, optional
        FITS input: the HDU(s) holding frames, by index or ``EXTNAME``; by default every image
        HDU. A 3-D HDU is a cube of frames (see `~sunpy_momfbd.io.read_fits_frames`).
    fill_invalid : bool, optional
        Give NaN/inf pixels outside the input's mask no weight, like masked ones (default false:
        they are an error naming the frame).
    drop_bad_frames : bool, optional
        Drop frames without variation over their valid pixels (all masked, blank, constant,
        saturated) from every channel with a warning (default false: they are an error naming
        the frame).
    select : int, optional
        Keep the ``select`` frames of highest RMS contrast (of the first channel) before the
        solve (`~sunpy_momfbd.preprocess.select_frames`); by default all frames.
    align : bool or {"subpixel", "pixel"}, optional
        Co-align the frames on frame 0 of the first channel before the solve (True means
        "subpixel"; `~sunpy_momfbd.preprocess.align_frames`); False by default. Selection runs
        first. Both are recorded in ``meta["momfbd"]["preprocess"]``.
    **solver_options
        Further `~sunpy_momfbd.solver.SolverSettings` fields (``d_over_r0``, ``patch_size``,
        ``init_iterations``, ``object_prior``, ``frame_batch``, ``dtype``, ``seed`` …).
        ``d_over_r0``, the seeing D/r0 at the first channel's wavelength, makes the restoration
        also remove the average blur of the wavefront beyond the fitted modes (see the usage
        guide, "Wavefront grid and seeing").

    Returns
    -------
    `~ndcube.NDCube` or `~ndcube.NDCollection`
        One NDCube for one object, an NDCollection keyed by object name for several. Each cube
        holds the restored object as float32 in the input's unit and intensity scale; its WCS
        is that of the **reference frame**, frame 0 of the channel that sees the object (so a
        pixel of the result and of that frame have the same world coordinates); its mask is
        True on the apodised border and where no frame has valid data; its ``meta`` (a
        `~sunpy_momfbd.io.ResultMeta`: ``meta["TELESCOP"]`` works) carries the reference frame's
        instrument keys, ``DATE-BEG``/``DATE-END`` of the burst, the provenance under
        ``meta["momfbd"]`` (package version, forward model with model-card id and weights
        SHA-256 and the reason it was chosen, solver settings, iterations, final loss, per-frame
        D/r0, timing, device, input dates and files, telescope, instrument and optical set-up
        of every channel) and the wavefront mode maps under ``meta["wavefront"]["modes"]``
        (radians, shape (n_frames, n_modes, gy, gx)).

    Raises
    ------
    TypeError
        For unsupported input types or unknown solver options.
    ValueError
        For a bad option value (the option, the value and what is allowed are named; see
        `~sunpy_momfbd.options.check_options`), a device this machine cannot use, a field too
        small for the forward model or a pupil too coarse for ``n_modes``, inconsistent frames
        (different shape, unit, plate scale or wavelength: the frame is named), unknown
        telescopes (the message lists the known ones and how to pass one), missing optics, or
        bad diversity declarations. All checks run before any computation.
    FloatingPointError
        If the loss stops being a finite number during the solve (the message says what to try).

    See Also
    --------
    sunpy_momfbd.save, sunpy_momfbd.load, sunpy_momfbd.visualization.plot_restoration

    References
    ----------
    * van Noort, M., Rouppe van der Voort, L. & Löfdahl, M. G. 2005, Sol. Phys. 228, 191.
    * Löfdahl, M. G. 2002, Proc. SPIE 4792, 146.
    * Asensio Ramos, A. 2024, A&A 688, A88.
    * Asensio Ramos, A. et al. 2025, torchmfbd, arXiv:2505.10639.

    Examples
    --------
    >>> from sunpy_momfbd import deconvolve
    >>> from sunpy_momfbd.data import sample_burst
    >>> burst = sample_burst(n_frames=3, size=48)
    >>> result = deconvolve(burst, n_iterations=2, init_iterations=1, progress=False)
    >>> result.data.shape, result.unit, result.meta["instrume"]
    ((48, 48), Unit("ct"), 'VBI')
    """
    options = check_options(
        forward=forward,
        n_modes=n_modes,
        mode_grid=mode_grid,
        n_iterations=n_iterations,
        device=device,
        progress=progress,
        **solver_options,
    )
    if output not in OUTPUT_CHOICES:
        msg = f"output must be one of {', '.join(map(repr, OUTPUT_CHOICES))}, got {output!r}"
        raise ValueError(msg)
    prepared = prepare_burst(
        data,
        telescope=telescope,
        wavelength=wavelength,
        pixel_scale=pixel_scale,
        optics=optics,
        diversity=diversity,
        n_modes=n_modes,
        hdu=hdu,
        fill_invalid=fill_invalid,
        drop_bad_frames=drop_bad_frames,
        select=select,
        align=align,
    )
    setups = [c.setup for c in prepared.burst.channels]
    choice = choose_forward(forward, setups, solver.resolve_device(device))
    log.debug(f"sunpy-momfbd: {prepared.burst.n_frames} frames, forward model {choice.name} ({choice.reason})")
    solution = solver.solve(prepared.burst, forward=choice.factory, **options)
    _log_solution(solution)
    choice.check_seeing(setups, solution.d_over_r0)
    result = solution_to_ndcube(solution, prepared, forward_info=choice.provenance)
    return to_map(result) if output == "map" else result


def _log_solution(solution):
    """Say what the solve chose and how long each stage took (``sunpy.log``, level DEBUG)."""
    settings = solution.settings
    stages = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in solution.timing.items())
    state = "converged" if solution.converged else "stopped at the iteration cap"
    log.debug(
        f"sunpy-momfbd: mode grid {tuple(settings['mode_grid'])}, {solution.iterations} iterations ({state}); {stages}"
    )
