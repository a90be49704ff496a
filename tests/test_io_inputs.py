import copy

import numpy as np
import pytest
from helpers_io import make_cube, make_header, make_maps
from ndcube import NDCube, NDCubeSequence

import astropy.units as u
from astropy.io import fits

import sunpy.map

from sunpy_momfbd.instruments import Telescope
from sunpy_momfbd.io import PhaseDiversity, group_files, prepare_burst, read_fits_map, waves
from sunpy_momfbd.optics import OpticalSetup, defocus_coefficients
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

SST_SAMPLING = 3.0463  # 630.2 nm, 0.97 m, 0.044"/px


def _stack(maps):
    return np.stack([m.data for m in maps])


def _check(prepared, maps, *, sampling=SST_SAMPLING):
    assert prepared.burst.n_frames == len(maps)
    channel = prepared.channels[0]
    np.testing.assert_array_equal(channel.frames, _stack(maps))
    assert channel.setup.sampling == pytest.approx(sampling, rel=1e-3)
    return channel


def test_list_tuple_and_sequence_of_maps():
    maps = make_maps()
    snapshot = [m.data.copy() for m in maps], [dict(m.meta) for m in maps]
    for data in (maps, tuple(maps), sunpy.map.Map(maps, sequence=True)):
        prepared = prepare_burst(data)
        channel = _check(prepared, maps)
        assert channel.unit == u.ct
        assert channel.telescope.name == "SST"
        assert channel.instrument.name == "CRISP"
        assert channel.wavelength == 630.2 * u.nm
        assert u.isclose(channel.pixel_scale, 0.044 * u.arcsec / u.pix)
        assert channel.times[0] == "2023-06-01T08:00:00.000"
        assert prepared.single
        assert prepared.notes == []
        assert channel.header["telescop"] == "Swedish 1-meter Solar Telescope (SST)"
        assert not any(k.startswith(("crval", "cdelt", "naxis")) for k in channel.header)
    # the caller's maps are untouched
    for m, data, meta in zip(maps, *snapshot, strict=True):
        np.testing.assert_array_equal(m.data, data)
        assert dict(m.meta) == meta


def test_ndcube():
    maps = make_maps()
    cube = make_cube(maps)
    prepared = prepare_burst(cube)
    channel = _check(prepared, maps)
    assert channel.unit == u.ct
    pixel = ([3, 40], [7, 11])
    np.testing.assert_allclose(
        channel.wcs.pixel_to_world_values(*pixel), maps[0].wcs.pixel_to_world_values(*pixel), rtol=1e-12
    )
    assert channel.times[0].startswith("2023-06-01T08:00:00")
    assert channel.times[2].startswith("2023-06-01T08:00:02")


def test_ndcube_sequence_of_2d_and_3d_cubes():
    maps = make_maps(4)
    flat = NDCubeSequence([NDCube(m.data, wcs=m.wcs, unit=m.unit, meta=dict(m.meta)) for m in maps])
    channel = _check(prepare_burst(flat), maps)
    assert channel.times == [m.meta["date-obs"] for m in maps]
    deep = NDCubeSequence([make_cube(maps[:2]), make_cube(maps[2:])])
    _check(prepare_burst(deep), maps)


def test_fits_files_with_solarnet_waveunit(tmp_path):
    maps = make_maps()
    files = []
    for i, m in enumerate(maps):
        header = fits.Header(m.fits_header)
        header["WAVEUNIT"] = -9  # the SOLARNET trap
        path = tmp_path / f"frame{i}.fits"
        fits.writeto(path, m.data, header)
        files.append(str(path))
    assert read_fits_map(files[0]).wavelength == 630.2 * u.nm
    channel = _check(prepare_burst(files), maps)
    assert channel.files == files
    assert channel.wavelength == 630.2 * u.nm


def test_arrays_need_explicit_optics(rng):
    frames = rng.random((3, 32, 32))
    with pytest.raises(ValueError, match="plain arrays carry no metadata"):
        prepare_burst(frames)
    prepared = prepare_burst(frames, optics=OpticalSetup(sampling=2.5))
    assert prepared.channels[0].setup.sampling == 2.5
    assert prepared.channels[0].unit is None
    assert prepared.channels[0].wcs.wcs.ctype[0] == "PIXEL"
    prepared = prepare_burst(
        frames * u.ct, telescope="SST", wavelength=630.2 * u.nm, pixel_scale=0.044 * u.arcsec / u.pix
    )
    assert prepared.channels[0].unit == u.ct
    assert prepared.channels[0].setup.sampling == pytest.approx(SST_SAMPLING, rel=1e-3)
    prepared = prepare_burst(list(frames), optics=OpticalSetup(sampling=2.5))
    np.testing.assert_array_equal(prepared.channels[0].frames, frames)
    with pytest.raises(ValueError, match="no wavelength"):
        prepare_burst(frames, telescope="SST", pixel_scale=0.044 * u.arcsec / u.pix)
    with pytest.raises(ValueError, match="no pixel scale"):
        prepare_burst(frames, telescope="SST", wavelength=630.2 * u.nm)


def test_overrides():
    maps = make_maps(telescope="Mystery Scope", instrument="Camera")
    with pytest.raises(ValueError, match=r"unknown telescope.*SST.*Telescope\(diameter="):
        prepare_burst(maps)
    custom = Telescope(diameter=0.485 * u.m)
    channel = prepare_burst(maps, telescope=custom).channels[0]
    assert channel.telescope is custom
    assert channel.setup.sampling == pytest.approx(SST_SAMPLING * 2, rel=1e-3)
    channel = prepare_burst(make_maps(), wavelength=1260.4 * u.nm, pixel_scale=0.022 * u.arcsec / u.pix).channels[0]
    assert channel.setup.sampling == pytest.approx(SST_SAMPLING * 4, rel=1e-3)
    assert channel.wavelength == 1260.4 * u.nm


def test_undersampled_override_warns():
    with pytest.warns(SunpyMomfbdUserWarning, match="below Nyquist"):
        channel = prepare_burst(make_maps(), wavelength=315.1 * u.nm, pixel_scale=0.088 * u.arcsec / u.pix).channels[0]
    assert channel.setup.sampling == pytest.approx(SST_SAMPLING / 4, rel=1e-3)


def test_unknown_telescop_falls_back_to_a_known_instrument():
    channel = prepare_burst(make_maps(telescope="La Palma 1m", instrument="CRISP")).channels[0]
    assert channel.telescope.name == "SST"


def test_missing_observer_is_noted_not_warned():
    prepared = prepare_burst(make_maps(observer=False))
    assert any("observer" in note for note in prepared.notes)


def test_multi_object_dict_and_diversity():
    wb, nb, pd = make_maps(seed=1), make_maps(seed=2, wavelength=630.25 * u.nm), make_maps(seed=3)
    prepared = prepare_burst({"wb": wb, "nb": nb})
    assert prepared.objects == ["wb", "nb"]
    assert not prepared.single
    assert [c.object_id for c in prepared.burst.channels] == ["wb", "nb"]
    prepared = prepare_burst({"wb": wb, "pd": pd}, diversity={"pd": PhaseDiversity("wb", 1.0 * waves)})
    assert prepared.objects == ["wb"]
    assert [c.object_id for c in prepared.burst.channels] == ["wb", "wb"]
    np.testing.assert_allclose(prepared.channels[1].coefficients, defocus_coefficients(1.0), atol=1e-12)
    assert prepared.reference_channel("wb").name == "wb"
    # a focus shift with a focal ratio: 4.4 mm at F/44 and 630.2 nm is 0.451 waves
    prepared = prepare_burst({"wb": wb, "pd": pd}, diversity={"pd": PhaseDiversity("wb", 4.4 * u.mm, focal_ratio=44)})
    np.testing.assert_allclose(prepared.channels[1].coefficients, defocus_coefficients(0.4508), rtol=1e-3, atol=1e-12)


def test_diversity_declaration_errors():
    wb, pd = make_maps(seed=1), make_maps(seed=3)
    with pytest.raises(ValueError, match="needs the data as a dict"):
        prepare_burst(wb, diversity={"pd": PhaseDiversity("wb", 1 * waves)})
    with pytest.raises(ValueError, match="not in the data"):
        prepare_burst({"wb": wb}, diversity={"pd": PhaseDiversity("wb", 1 * waves)})
    with pytest.raises(ValueError, match="not a focused channel"):
        prepare_burst({"wb": wb, "pd": pd}, diversity={"pd": PhaseDiversity("nb", 1 * waves)})
    with pytest.raises(TypeError, match="diversity must be a dict"):
        prepare_burst({"wb": wb, "pd": pd}, diversity=PhaseDiversity("wb", 1 * waves))
    with pytest.raises(ValueError, match="give focal_ratio"):
        PhaseDiversity("wb", 4.4 * u.mm)
    with pytest.raises(ValueError, match="waves or a length"):
        PhaseDiversity("wb", 3 * u.s)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shape": (40, 48)}, r"frame 2 has shape \(40, 48\), but frame 0 has \(48, 48\)"),
        ({"unit": u.W}, "frame 2 is in unit W, but frame 0 is in ct"),
        ({"scale": 0.05}, "frame 2 has pixel scale 0.05 x 0.05 arcsec/pix, but frame 0 has 0.044"),
        ({"wavelength": 656.3 * u.nm}, "frame 2 has wavelength 656.3 nm, but frame 0 has 630.2 nm"),
    ],
)
def test_inconsistent_frames_are_named(change, message):
    maps = make_maps(2)
    shape = change.pop("shape", (48, 48))
    maps.append(sunpy.map.Map(np.ones(shape), make_header(shape, **change)))
    with pytest.raises(ValueError, match=message):
        prepare_burst(maps)


def test_inconsistent_files_are_named(tmp_path):
    maps = [*make_maps(2), sunpy.map.Map(np.ones((48, 48)), make_header(wavelength=656.3 * u.nm))]
    files = []
    for i, m in enumerate(maps):
        files.append(str(tmp_path / f"f{i}.fits"))
        m.save(files[-1])
    with pytest.raises(ValueError, match=r"frame 2 \(f2.fits\) has wavelength"):
        prepare_burst(files)


def test_bad_input_types(rng):
    maps = make_maps()
    with pytest.raises(TypeError, match="a single Map is one frame"):
        prepare_burst(maps[0])
    with pytest.raises(TypeError, match="unsupported input type int"):
        prepare_burst(3)
    with pytest.raises(TypeError, match="only Maps, only file paths or only 2-D arrays"):
        prepare_burst([maps[0], rng.random((48, 48))])
    with pytest.raises(ValueError, match="no frames given"):
        prepare_burst([])
    with pytest.raises(ValueError, match="empty dict"):
        prepare_burst({})
    with pytest.raises(FileNotFoundError, match=r"input file frame\.fits does not exist"):
        prepare_burst("frame.fits")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_burst(["no-such-file.fits", "other.fits"])
    with pytest.raises(ValueError, match="a 2-D NDCube is one frame"):
        prepare_burst(NDCube(maps[0].data, wcs=maps[0].wcs))
    with pytest.raises(ValueError, match="same number of frames"):
        prepare_burst({"a": maps, "b": make_maps(4)})


def test_ndcube_frame_axis_must_come_first():
    maps = make_maps()
    cube = make_cube(maps)
    wcs = cube.wcs.low_level_wcs.swapaxes(1, 2)  # time axis in the middle of the array axes
    moved = NDCube(np.moveaxis(cube.data, 0, 1), wcs=wcs, meta=dict(cube.meta))
    with pytest.raises(ValueError, match=r"array axes \(frame, y, x\)"):
        prepare_burst(moved)


def test_pointing_difference_warns():
    maps = make_maps(2)
    maps.append(sunpy.map.Map(maps[1].data, make_header(centre=(101.0, 200.0))))
    with pytest.warns(SunpyMomfbdUserWarning, match="frame 2 points .* pixels away from frame 0"):
        prepare_burst(maps)


def test_non_square_pixels():
    header = make_header()
    maps = [sunpy.map.Map(m.data, copy.copy(header) | {"cdelt2": 0.05}) for m in make_maps(2)]
    with pytest.raises(ValueError, match="non-square pixels"):
        prepare_burst(maps)


def test_group_files():
    files = ["a/wb_1.fits", "a/wb_2.fits", "a/nb_1.fits", "a/nb_2.fits"]
    groups = group_files(files, {"wb": "wb_*", "nb": "*/nb_*.fits"})
    assert groups == {"wb": files[:2], "nb": files[2:]}
    with pytest.raises(ValueError, match="matches no input file"):
        group_files(files, {"wb": "wb_*", "nb": "nb_*", "pd": "pd_*"})
    with pytest.raises(ValueError, match=r"match no --object pattern: a/nb_1\.fits"):
        group_files(files, {"wb": "wb_*"})
    with pytest.raises(ValueError, match="both"):
        group_files(files, {"all": "*", "wb": "wb_*"})
