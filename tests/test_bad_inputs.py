"""
Bad input is refused before any work, with an error naming the option, the value and what is allowed.

Every case also checks that nothing is left on disk: the command line is given an output file,
and a failure must leave its directory as it was (no result, no hidden temporary file).
"""

import contextlib
import math
import re
import sys

import numpy as np
import pytest
import torch
from helpers_io import FAST, make_maps
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import astropy.units as u

from sunpy_momfbd import cli, deconvolve
from sunpy_momfbd.forward import PhysicalForward
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.options import check_options
from sunpy_momfbd.parallel import deconvolve_many
from sunpy_momfbd.solver import SolverSettings
from sunpy_momfbd.solver.settings import MAX_MODES, check_loss

SETUP = OpticalSetup(sampling=2.2)
#: Header keys of DKIST/VBI frames (2.29 pixels per λ/D at 450.4 nm and 0.0101"/px).
VBI = {"telescope": "Daniel K. Inouye Solar Telescope", "instrument": "VBI"}


def _no_solve(monkeypatch):
    """Make any solve (or reading of the data) fail the test: errors must come before."""

    def fail(*args, **kwargs):
        raise AssertionError("no work may start before the options are checked")

    monkeypatch.setattr("sunpy_momfbd.api.prepare_burst", fail)


# --------------------------------------------------------------------------------- option values

BAD_OPTIONS = [
    ({"n_modes": 1}, ValueError, f"n_modes must be an integer from 2 (tip and tilt) to {MAX_MODES}, got 1"),
    ({"n_modes": 1000}, ValueError, "n_modes must be an integer from 2 (tip and tilt) to 200, got 1000"),
    ({"n_modes": 44.0}, ValueError, "n_modes must be an integer from 2 (tip and tilt) to 200, got 44.0"),
    ({"n_iterations": True}, ValueError, "n_iterations must be an integer of at least 0, got True"),
    ({"n_iterations": -1}, ValueError, "n_iterations must be an integer of at least 0, got -1"),
    ({"init_iterations": "abc"}, ValueError, "init_iterations must be an integer of at least 0, got 'abc'"),
    ({"object_prior": -1}, ValueError, "object_prior must be 'auto' or a finite number > 0, got -1"),
    ({"object_prior": math.nan}, ValueError, "object_prior must be 'auto' or a finite number > 0, got nan"),
    ({"patch_size": 0}, ValueError, "patch_size must be an integer of at least 16, got 0"),
    ({"mode_steps": (0,)}, ValueError, "mode_steps must be None or a sequence of positive mode counts"),
    ({"mode_steps": "5,9"}, ValueError, "mode_steps must be None or a sequence of positive mode counts"),
    ({"smoothness": -1}, ValueError, "smoothness must be a finite number >= 0, got -1"),
    ({"tolerance": -1}, ValueError, "tolerance must be 'auto' or a finite number >= 0, got -1"),
    ({"tolerance": math.inf}, ValueError, "tolerance must be 'auto' or a finite number >= 0, got inf"),
    ({"learning_rate": 0}, ValueError, "learning_rate must be a finite number > 0, got 0"),
    ({"frame_batch": 0}, ValueError, "frame_batch must be 'auto', None or a positive integer, got 0"),
    ({"d_over_r0": -3}, ValueError, "d_over_r0 must be a finite number > 0 or None, got -3"),
    ({"even_seed": math.nan}, ValueError, "even_seed must be 'auto' or a finite number >= 0, got nan"),
    ({"mode_grid": (2, 0)}, ValueError, "mode_grid must be 'auto' or one or two positive integers (gy, gx)"),
    ({"mode_grid": True}, ValueError, "mode_grid must be 'auto' or one or two positive integers (gy, gx)"),
    ({"fit_diversity": "yes"}, ValueError, "fit_diversity must be True or False, got 'yes'"),
    ({"refine_wavefronts": "no"}, ValueError, "refine_wavefronts must be 'auto', True or False, got 'no'"),
    ({"patch_metric": "map"}, ValueError, "patch_metric must be 'auto', 'marginal' or 'joint', got 'map'"),
    ({"object_prior": "strong"}, ValueError, "object_prior must be 'auto' or a finite number > 0, got 'strong'"),
    ({"progress": 1}, ValueError, "progress must be True or False, got 1"),
    ({"optimizer": "sgd"}, ValueError, "optimizer must be 'lbfgs' or 'adam', got 'sgd'"),
    ({"dtype": "float16"}, ValueError, "dtype must be torch.float32 or torch.float64 (or their names), got 'float16'"),
    ({"dtype": torch.bfloat16}, ValueError, "dtype must be torch.float32 or torch.float64"),
    ({"seed": "a"}, ValueError, "seed must be a non-negative integer below 2**63, got 'a'"),
    ({"seed": -1}, ValueError, "seed must be a non-negative integer below 2**63, got -1"),
    ({"device": "foo"}, ValueError, "device must be 'auto' or a torch device name such as 'cpu', 'cuda'"),
    ({"device": "cuda:99"}, ValueError, "device 'cuda:99' is not available"),
    ({"forward": "fast"}, ValueError, "forward must be one of 'auto', 'emulator', 'physical'"),
    ({"n_iteration": 3}, TypeError, "unknown solver option(s) n_iteration; valid: "),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS)
def test_bad_options_are_named_before_any_work(monkeypatch, options, error, message):
    _no_solve(monkeypatch)
    with pytest.raises(error, match=re.escape(message)):
        deconvolve(make_maps(), **options)


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS[::4])
def test_campaign_checks_the_same_options_before_any_scan(tmp_path, options, error, message):
    with pytest.raises(error, match=re.escape(message)):
        deconvolve_many({"scan": make_maps()}, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match=r"device 'cuda' is not available: this torch \(.*\) sees no CUDA GPU"):
        SolverSettings(device="cuda")


def test_good_values_are_normalised():
    settings = SolverSettings(dtype="float64", mode_grid=3, mode_steps=[9, None], frame_batch=np.int64(2))
    assert settings.dtype is torch.float64
    assert settings.mode_grid == (3, 3)
    assert settings.mode_steps == (9, None)
    assert type(settings.frame_batch) is int


# ----------------------------------------------------------------------- settings against the data


@pytest.mark.parametrize(
    ("frames", "options", "message"),
    [
        # A field narrower than the PSF border (27 pixels at this sampling's default PSF).
        (
            np.ones((3, 48, 20)),
            {},
            "the field, 48x20 pixels, is too small for the forward model: it reaches 27 pixels "
            "(PhysicalForward: half its 54-pixel PSF), and the field must be wider than that along both axes "
            "(at least 28 pixels); use a larger field (or coarser pixels)",
        ),
        # The shipped emulator sees 107 pixels around each pixel.
        (np.ones((3, 48, 48)), {"forward": "emulator"}, "or forward='physical'"),
        # A 16-pixel patch holds a pupil 7 pixels across: too coarse for 44 modes.
        (
            np.ones((3, 48, 48)),
            {"patch_size": 16},
            "n_modes=44 is too many for channel 0's pupil sampling: at 2.2 pixels per λ/D the pupil is 7.27 "
            "pixels across on the 16-pixel wavefront patch grid, too coarse for 44 modes; use fewer modes "
            "(n_modes) or a larger patch_size",
        ),
    ],
)
def test_settings_are_checked_against_the_field_before_any_iteration(rng, monkeypatch, frames, options, message):
    def fail(*args, **kwargs):
        raise AssertionError("the initialisation must not start")

    monkeypatch.setattr(sys.modules["sunpy_momfbd.solver.solve"], "patch_wavefronts", fail)
    frames = frames + rng.random(frames.shape)
    emulator = options.get("forward") == "emulator"
    with pytest.warns(UserWarning, match="does not certify") if emulator else contextlib.nullcontext():
        with pytest.raises(ValueError, match=re.escape(message)):
            deconvolve(frames, optics=SETUP, progress=False, **options)


def test_gregor_on_a_small_vbi_field_is_named(monkeypatch):
    # GREGOR's 1.5 m pupil at VBI's 0.011"/px puts 6.4 pixels in λ/D: a 154-pixel PSF.
    with pytest.raises(ValueError, match=r"the field, 48x48 pixels, is too small .* half its 154-pixel PSF"):
        deconvolve(make_maps(scale=0.0101, wavelength=450.4 * u.nm), telescope="GREGOR", **FAST)


class _Exploding(PhysicalForward):
    """A forward model whose images overflow: the loss becomes infinite."""

    def forward(self, obj, modes):
        return super().forward(obj, modes) * math.inf


def test_non_finite_loss_stops_with_advice(rng):
    with pytest.raises(FloatingPointError, match=r"the solve's loss became (inf|nan) at refinement iteration 1: "):
        deconvolve(rng.random((3, 48, 48)), optics=SETUP, forward=_Exploding, n_iterations=2, init_iterations=0)
    with pytest.raises(FloatingPointError, match=r"try dtype=torch\.float64, a larger object_prior"):
        check_loss(math.nan, 7)
    assert check_loss(1.5, 7) == 1.5  # finite: passed through


# --------------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def fits_frames(tmp_path_factory):
    directory = tmp_path_factory.mktemp("frames")
    paths = []
    for index, m in enumerate(make_maps(scale=0.0101, wavelength=450.4 * u.nm, **VBI)):
        path = directory / f"frame_{index}.fits"
        m.save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--option", "init_iterations=abc"], "--option: init_iterations must be an integer of at least 0, got 'abc'"),
        (["--option", "patch_size=0"], "--option: patch_size must be an integer of at least 16, got 0"),
        (["--option", "dtype=float16"], "--option: dtype must be torch.float32 or torch.float64"),
        (["--forward", "emulator"], "is too small for the forward model"),
        (["--device", "nowhere"], "device must be 'auto' or a torch device name"),
        (["--device", "cuda:99"], "device 'cuda:99' is not available"),
        (["--telescope", "GREGOR"], "half its 154-pixel PSF"),
    ],
)
@pytest.mark.filterwarnings("ignore:the emulator's model card does not certify")  # the real run warns too
def test_cli_user_errors_are_one_line_with_status_2(fits_frames, tmp_path, capsys, arguments, message):
    output = tmp_path / "out.asdf"
    status = cli.main(["deconvolve", *fits_frames, "-o", str(output), "--quiet", "--iterations", "1", *arguments])
    err = capsys.readouterr().err
    assert status == cli.EXIT_USER_ERROR
    assert err.count("\n") == 1
    assert err.startswith("sunpy-momfbd deconvolve: error: ")
    assert message in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


# ------------------------------------------------------------------------------- generated values

#: Values of every kind a user might pass by mistake.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["auto", "lbfgs", "adam", "cpu", "float64", "cuda", "meta"]),
    st.tuples(st.integers(-3, 300), st.integers(-3, 300)),
    st.lists(st.one_of(st.none(), st.integers(-3, 300)), max_size=4),
)
NAMES = sorted(f.name for f in SolverSettings.__dataclass_fields__.values())


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from([*NAMES, "n_modes", "forward"]), value=ANY_VALUE)
def test_generated_option_values_give_only_named_errors(name, value):
    try:
        options = check_options(**{name: value})
    except ValueError as err:
        assert name in str(err)  # noqa: PT017 - the message must name the option
        assert repr(value)[:20] in str(err) or str(value)[:20] in str(err)  # noqa: PT017 - and the value
        return
    # Accepted: the value must make valid settings, as the solver will see them.
    settings_ = SolverSettings(**{k: v for k, v in options.items() if k in NAMES})
    if name in NAMES and value is not None and not isinstance(value, str | tuple | list):
        assert not isinstance(value, bool) or name in _FLAGS
        assert not (isinstance(value, float) and not math.isfinite(value))
    assert settings_ is not None


_FLAGS = {"fit_diversity", "refine_wavefronts", "mixed_precision", "checkpointing", "progress"}


# ------------------------------------------------------------------------------ generated headers

#: Header values a real (or broken) file might carry.
HEADER_VALUES = {
    "WAVELNTH": st.one_of(st.floats(allow_nan=True, allow_infinity=False, width=32), st.just("630.2")),
    "WAVEUNIT": st.sampled_from(["nm", "Angstrom", "m", "um", -9, -10, 0, "furlong", "", "pix"]),
    "CDELT1": st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, width=32),
    "CDELT2": st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, width=32),
    "CUNIT1": st.sampled_from(["arcsec", "deg", "m", "", "nonsense"]),
    "TELESCOP": st.sampled_from(["DKIST", "Daniel K. Inouye Solar Telescope", "GREGOR", "nowhere", ""]),
    "DATE-OBS": st.sampled_from(["2023-06-01T08:00:00", "yesterday", ""]),
    "BUNIT": st.sampled_from(["ct", "DN", "W", "nonsense", ""]),
}


def _write_frames(directory, changes):
    from astropy.io import fits

    paths = []
    for index, m in enumerate(make_maps(n=2, shape=(48, 48), scale=0.0101, wavelength=450.4 * u.nm, **VBI)):
        header = fits.Header(m.fits_header)
        for key, value in changes.items():
            if value == "":
                header.remove(key, ignore_missing=True)  # a missing key
            else:
                header[key] = value
        paths.append(directory / f"frame_{index}.fits")
        fits.writeto(paths[-1], np.asarray(m.data, dtype=np.float32), header)
    return [str(p) for p in paths]


@pytest.mark.filterwarnings("ignore")  # odd headers warn in many ways; only errors are judged here
@settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.fixed_dictionaries({}, optional=HEADER_VALUES))
@example(changes={})  # the unchanged header restores
def test_generated_headers_give_a_result_or_one_named_error(tmp_path_factory, capsys, changes):
    directory = tmp_path_factory.mktemp("headers")
    inputs, output = directory / "in", directory / "out"
    inputs.mkdir()
    output.mkdir()
    try:
        files = _write_frames(inputs, changes)
    except (ValueError, TypeError, OSError):  # astropy refuses to write such a header: not our input
        return
    argv = ["deconvolve", *files, "-o", str(output / "result.asdf"), "--iterations", "0", "--quiet"]
    status = cli.main([*argv, "--option", "init_iterations=0"])
    err = capsys.readouterr().err
    assert status in (0, cli.EXIT_USER_ERROR), err  # never an internal error
    if status:
        assert err.count("\n") == 1
        assert list(output.iterdir()) == []  # nothing written on failure
    else:
        assert [p.name for p in output.iterdir()] == ["result.asdf"]
