"""
The options of `~sunpy_momfbd.deconvolve`, checked in one place before any data is read.

`~sunpy_momfbd.deconvolve`, `~sunpy_momfbd.deconvolve_many` and the ``sunpy-momfbd`` command all
call `check_options`; the solver's own settings are checked by
`~sunpy_momfbd.solver.SolverSettings`, and the settings against the burst (field size, pupil
sampling) by the solver before its first iteration.
"""

from dataclasses import fields

from sunpy_momfbd.solver.settings import SolverSettings, check_n_modes

__all__ = ["FORWARD_CHOICES", "check_options"]

#: Accepted string values of ``forward`` (a model instance or a ``callable(setup)`` also works).
FORWARD_CHOICES = ("auto", "emulator", "physical")


def check_options(*, forward="auto", n_modes=44, mode_grid=None, n_iterations=None, device="auto", **solver_options):
    """
    Check the options of `~sunpy_momfbd.deconvolve` that do not depend on the data.

    Parameters
    ----------
    forward, n_modes, mode_grid, n_iterations, device
        As for `~sunpy_momfbd.deconvolve` (None for ``mode_grid`` and ``n_iterations``: the
        solver's default).
    **solver_options
        Fields of `~sunpy_momfbd.solver.SolverSettings` (``progress`` among them).

    Returns
    -------
    dict
        The keyword arguments of `~sunpy_momfbd.solver.solve`: the solver options with
        ``mode_grid``, ``n_iterations`` and ``device`` included.

    Raises
    ------
    TypeError
        For unknown solver options (the valid ones are listed).
    ValueError
        For a bad value: the message names the option, the value and what is allowed.

    Examples
    --------
    >>> from sunpy_momfbd.options import check_options
    >>> check_options(n_iterations=-1)
    Traceback (most recent call last):
    ...
    ValueError: n_iterations must be an integer of at least 0, got -1
    """
    valid = {f.name for f in fields(SolverSettings)}
    unknown = sorted(set(solver_options) - valid)
    if unknown:
        msg = f"unknown solver option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        raise TypeError(msg)
    _check_forward(forward)
    check_n_modes(n_modes)
    options = dict(solver_options, device=device)
    if mode_grid is not None:
        options["mode_grid"] = mode_grid
    if n_iterations is not None:
        options["n_iterations"] = n_iterations
    SolverSettings(**options)
    return options


def _check_forward(forward):
    if isinstance(forward, str) and forward in FORWARD_CHOICES:
        return
    if isinstance(forward, str) or not callable(forward):
        choices = ", ".join(map(repr, FORWARD_CHOICES))
        msg = f"forward must be one of {choices}, a ForwardModel or a callable(setup), got {forward!r}"
        raise ValueError(msg)
