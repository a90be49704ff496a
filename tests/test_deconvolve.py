import numpy as np
import pytest
from helpers_io import FAST, make_maps, small_restoration
from ndcube import NDCollection, NDCube

import astropy.units as u

import sunpy.map

from sunpy_momfbd import __version__, deconvolve
from sunpy_momfbd.data import sample_burst, sample_scene
from sunpy_momfbd.forward import PhysicalForward, select
from sunpy_momfbd.io import PhaseDiversity, waves
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.solver import resolve_device
from sunpy_momfbd.visualization import azimuthal_power_spectrum


@pytest.fixture(scope="module")
def restoration():
    return small_restoration()


def test_result_is_ndcube_in_input_unit(restoration):
    burst, result = restoration
    assert isinstance(result, NDCube)
    assert result.data.dtype == np.float32
    assert result.data.shape == burst[0].data.shape
    assert result.unit == u.ct
    # same intensity scale as the input
    assert np.mean(result.data) == pytest.approx(np.mean(burst[0].data), rel=0.05)


def test_wcs_is_the_reference_frame(restoration):
    burst, result = restoration
    for x, y in [(0, 0), (10, 37), (47, 47), (23.5, 5.25)]:
        restored = result.wcs.pixel_to_world(x, y)
        observed = burst[0].wcs.pixel_to_world(x, y)
        assert restored.separation(observed) < 1e-6 * u.arcsec
        assert restored.obstime == observed.obstime


def test_mask_is_the_border(restoration):
    _, result = restoration
    border = result.meta["momfbd"]["mask"]["border"]
    assert border >= 1
    assert result.mask.dtype == bool
    assert result.mask[0].all()
    assert result.mask[:, -1].all()
    assert not result.mask[border:-border, border:-border].any()
    assert result.mask[:border].all()


def test_provenance(restoration):
    burst, result = restoration
    meta = result.meta
    assert isinstance(meta, dict)
    assert meta["telescop"] == "Daniel K. Inouye Solar Telescope"
    assert meta["instrume"] == "VBI"
    assert meta["wavelnth"] == 450.4
    assert meta["waveunit"] == "nm"
    assert meta["date-obs"] == burst[0].meta["date-obs"]
    assert meta["date-beg"] == burst[0].meta["date-obs"]
    assert meta["date-end"] == burst[-1].meta["date-obs"]
    provenance = meta["momfbd"]
    assert provenance["version"] == __version__
    assert provenance["forward"]["name"] == "PhysicalForward"
    assert "no CUDA GPU" in provenance["forward"]["reason"]
    assert set(provenance["forward"]) >= {"model_card_id", "weights_sha256"}
    assert provenance["settings"]["n_iterations"] == 2
    assert provenance["settings"]["mode_grid"] == [2, 2]
    assert provenance["iterations"] == len(provenance["loss_history"]) > 0
    assert provenance["final_loss"] == provenance["loss_history"][-1]
    assert provenance["d_over_r0"].shape == (3,)
    assert set(provenance["timing"]) >= {"initialisation", "refinement"}
    assert provenance["device"] == "cpu"
    assert provenance["input"]["date_obs_start"] == burst[0].meta["date-obs"]
    assert provenance["input"]["date_obs_end"] == burst[-1].meta["date-obs"]
    channel = provenance["channels"]["object"]
    assert channel["telescope"]["name"] == "DKIST"
    assert channel["telescope"]["diameter"] == 4 * u.m
    assert channel["instrument"] == "VBI"
    assert channel["setup"]["sampling"] == pytest.approx(2.294, abs=1e-3)
    assert channel["setup"]["wavelength"] == 450.4 * u.nm
    assert channel["pixel_scale"].unit == u.arcsec / u.pix
    assert provenance["libraries"]["torch"]


def test_wavefront_kept_with_result(restoration):
    _, result = restoration
    wavefront = result.meta["wavefront"]
    assert wavefront["modes"].shape == (3, 44, 2, 2)
    assert wavefront["unit"] == "rad"
    assert wavefront["wavelength"] == 450.4 * u.nm


def test_input_not_modified():
    maps = make_maps()
    before = [(m.data.copy(), dict(m.meta)) for m in maps]
    deconvolve(maps, **FAST)
    for m, (data, meta) in zip(maps, before, strict=True):
        np.testing.assert_array_equal(m.data, data)
        assert dict(m.meta) == meta


def test_ndcube_sequence_and_arrays_end_to_end(rng):
    maps = make_maps()
    sequence = sunpy.map.Map(maps, sequence=True)
    result = deconvolve(sequence, forward="physical", **FAST)
    assert result.meta["momfbd"]["forward"]["reason"] == "requested (forward='physical')"
    pixel = (5, 9)
    assert result.wcs.pixel_to_world(*pixel).separation(maps[0].wcs.pixel_to_world(*pixel)) < 1e-6 * u.arcsec
    frames = 1000 + rng.random((3, 32, 32))
    result = deconvolve(frames * u.ct, optics=OpticalSetup(sampling=2.5), **FAST)
    assert result.unit == u.ct
    assert result.data.shape == (32, 32)
    assert [float(v) for v in result.wcs.pixel_to_world_values(3, 4)] == [3, 4]


def test_several_objects_give_a_collection():
    wb, nb = make_maps(seed=1), make_maps(seed=2, wavelength=630.25 * u.nm)
    result = deconvolve({"wb": wb, "nb": nb}, **FAST)
    assert isinstance(result, NDCollection)
    assert list(result) == ["wb", "nb"]
    for name, maps in (("wb", wb), ("nb", nb)):
        assert result[name].meta["momfbd"]["object"] == name
        assert result[name].meta["wavelnth"] == maps[0].meta["wavelnth"]
        assert result[name].wcs.pixel_to_world(4, 4).separation(maps[0].wcs.pixel_to_world(4, 4)) < 1e-6 * u.arcsec


def test_phase_diversity_channel():
    wb, pd = make_maps(2, seed=1), make_maps(2, seed=3)
    result = deconvolve({"wb": wb, "pd": pd}, diversity={"pd": PhaseDiversity("wb", 1.0 * waves)}, **FAST)
    assert isinstance(result, NDCollection)
    assert list(result) == ["wb"]
    channels = result["wb"].meta["momfbd"]["channels"]
    assert channels["pd"]["diversity"] == {"object": "wb", "defocus": "1.0 waves", "focal_ratio": None}
    assert channels["pd"]["diversity_coefficients"].shape == (44,)


def test_errors_before_any_work(monkeypatch):
    maps = make_maps()

    def fail(*args, **kwargs):
        raise AssertionError("solve must not run")

    monkeypatch.setattr("sunpy_momfbd.solver.solve", fail)
    with pytest.raises(TypeError, match=r"unknown solver option.*n_iteration.*valid"):
        deconvolve(maps, n_iteration=3)
    with pytest.raises(ValueError, match="mode_grid"):
        deconvolve(maps, mode_grid=0)
    with pytest.raises(ValueError, match="forward must be one of 'auto', 'emulator', 'physical'"):
        deconvolve(maps, forward="fast")
    # The shipped emulator refuses set-ups outside its trained range (sampling 1.8-4).
    with pytest.raises(ValueError, match="sampling"):
        deconvolve(maps, forward="emulator", pixel_scale=0.01 * u.arcsec / u.pix)
    with pytest.raises(ValueError, match="the given forward model was built for"):
        deconvolve(maps, forward=PhysicalForward(OpticalSetup(sampling=2.2)))
    with pytest.raises(ValueError, match="unknown telescope"):
        deconvolve(make_maps(telescope="Mystery", instrument="Camera"), **FAST)


class _FakeEmulator:
    weights_sha256 = "0" * 64
    card = {"architecture": {"name": "fake-card"}, "weights_sha256": "0" * 64, "trained_ranges": {"sampling": [2, 4]}}

    def __init__(self, certified):
        self.certified = certified

    def is_certified(self, setup, d_over_r0=None):
        return self.certified


@pytest.mark.parametrize(
    ("cuda", "loader", "name", "reason"),
    [
        (False, None, "PhysicalForward", "no CUDA GPU"),
        (True, FileNotFoundError("none"), "PhysicalForward", "no emulator weights are installed"),
        (True, ValueError("outside sampling"), "PhysicalForward", "does not cover this set-up"),
        (True, False, "PhysicalForward", "does not certify sampling 2.5"),
        (True, True, "EmulatorForward", "certified set-up"),
    ],
)
def test_auto_forward_choice(monkeypatch, cuda, loader, name, reason):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)

    def load(setups, **kwargs):
        if isinstance(loader, Exception):
            raise loader
        return [_FakeEmulator(loader) for _ in setups]

    monkeypatch.setattr(select, "_load_emulators", load)
    setup = OpticalSetup(sampling=2.5)
    choice = select.choose_forward("auto", [setup], resolve_device("auto"))
    info = choice.provenance
    assert info["name"] == name
    assert reason in info["reason"]
    if name == "EmulatorForward":
        assert info["model_card_id"] == "fake-card-000000000000"
        assert info["weights_sha256"] == "0" * 64
        assert isinstance(choice.factory(setup), _FakeEmulator)
    else:
        assert choice.factory is None  # the solver's own PhysicalForward, its PSFs sized for the wavefronts


@pytest.mark.parametrize(("size", "variant"), [(160, True), (64, False)])
def test_wavefront_grid_follows_the_field_by_default(size, variant):
    """A field several patches wide is solved spatially variant by default; one patch wide, not."""
    from sunpy_momfbd.data import sample_burst
    from sunpy_momfbd.solver import auto_mode_grid

    result = deconvolve(sample_burst(n_frames=2, size=size), **FAST)
    provenance = result.meta["momfbd"]
    grid = provenance["settings"]["mode_grid"]
    # 160 pixels hold two patches per axis: at least 3 points over the padded field (how many
    # depends on the border, which follows the seeing the patches measure).
    assert (min(grid) >= 3) if variant else (grid == [1, 1])
    assert result.meta["wavefront"]["modes"].shape[-2:] == tuple(grid)
    assert tuple(grid) == auto_mode_grid((size, size), provenance["settings"]["patch_size"], provenance["padding"])
    # The strategy follows the grid: spatially variant wavefronts come from the marginal patch fit
    # and are kept; a single wavefront is refined over the whole field.
    assert provenance["settings"]["refine_wavefronts"] is not variant
    assert provenance["settings"]["patch_metric"] == ("marginal" if variant else "joint")
    assert provenance["settings"]["object_prior"] == (3.0 if variant else 1.0)


def test_the_choices_and_stage_times_are_logged():
    from sunpy import log

    from sunpy_momfbd.data import sample_burst

    burst = sample_burst(n_frames=2, size=48)
    level = log.level
    log.setLevel("DEBUG")
    try:
        with log.log_to_list() as messages:
            result = deconvolve(burst, mode_grid=2, **FAST)
    finally:
        log.setLevel(level)
    text = "\n".join(record.getMessage() for record in messages)
    assert f"2 frames, forward model PhysicalForward ({result.meta['momfbd']['forward']['reason']})" in text
    assert f"mode grid (2, 2), {result.meta['momfbd']['iterations']} iterations" in text
    assert "initialisation" in text
    assert "refinement" in text


def test_a_weaker_object_prior_keeps_the_truths_power_and_the_default_the_least_error():
    burst, truth = sample_burst(n_frames=4, size=128), sample_scene(size=128).data
    errors, power = {}, {}
    for prior in ("auto", 1.0):  # "auto" is 3 on this spatially variant (3 × 3) grid
        result = deconvolve(burst, object_prior=prior, progress=False)
        inside = ~result.mask
        errors[prior] = np.sqrt(1 - np.corrcoef(result.data[inside], truth[inside])[0, 1] ** 2)
        frequency, restored = azimuthal_power_spectrum(result.data, mask=result.mask)
        reference = azimuthal_power_spectrum(truth, mask=result.mask)[1]
        relative = frequency * result.meta["momfbd"]["channels"]["object"]["setup"]["sampling"]  # of the cutoff
        band = (relative >= 0.3) & (relative < 0.6)
        power[prior] = restored[band].mean() / reference[band].mean()
    assert errors["auto"] < errors[1.0]  # the default is the restoration of least error ...
    assert power[1.0] > 3 * power["auto"]  # ... the weaker prior keeps several times its power there,
    assert abs(np.log(power[1.0])) < abs(np.log(power["auto"]))  # closer to the truth's
