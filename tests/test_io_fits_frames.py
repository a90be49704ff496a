"""Instrument files: 3-D FITS cubes and multi-extension bursts read as the same frames as Maps."""

from functools import lru_cache

import numpy as np
import pytest
from helpers_io import FAST, make_cube, make_header, make_maps

import astropy.units as u
from astropy.io import fits

import sunpy.map

from sunpy_momfbd import deconvolve
from sunpy_momfbd.io import prepare_burst, read_fits_frames

#: Header keys of the frames that are not WCS (instrument, observer).
_KEYS = ("telescop", "instrume", "wavelnth", "waveunit", "hgln_obs", "hglt_obs", "dsun_obs", "rsun_ref")


@lru_cache(maxsize=1)
def _maps():
    return make_maps(3)


def _common(maps):
    return {k.upper(): maps[0].meta[k] for k in _KEYS if k in maps[0].meta}


def _write_cube(path, maps, *, frames_first=True):
    """SST-style cube: frames along NAXIS3 (numpy axis 0), or along NAXIS1 (numpy axis 2)."""
    cube = make_cube(maps)
    wcs, data = cube.wcs.low_level_wcs, cube.data
    if not frames_first:
        wcs, data = wcs.sub([3, 1, 2]), np.moveaxis(data, 0, -1)
    header = wcs.to_header()
    header.update(_common(maps))
    header["DATE-OBS"] = maps[0].meta["date-obs"]
    fits.writeto(path, data, header)
    return path


def _write_extensions(path, maps):
    """HiFI+-style burst: common keys in an empty primary HDU, one image extension per frame."""
    primary = fits.PrimaryHDU(header=fits.Header(_common(maps)))
    extensions = []
    for i, m in enumerate(maps):
        header = fits.Header({k: v for k, v in m.meta.items() if k.upper() not in _common(maps) and len(k) <= 8})
        header["EXTNAME"] = f"FRAME{i}"
        extensions.append(fits.ImageHDU(m.data, header))
    fits.HDUList([primary, *extensions]).writeto(path)
    return path


def _assert_same_frames(prepared, maps):
    channel = prepared.channels[0]
    np.testing.assert_array_equal(channel.frames, np.stack([m.data for m in maps]))
    pixel = ([0, 17, 47], [3, 40, 47])
    np.testing.assert_allclose(
        channel.wcs.pixel_to_world_values(*pixel), maps[0].wcs.pixel_to_world_values(*pixel), rtol=0, atol=1e-10
    )
    assert u.isclose(channel.pixel_scale, 0.044 * u.arcsec / u.pix)
    assert channel.telescope.name == "SST"
    assert [t[:19] for t in channel.times] == [m.date.isot[:19] for m in maps]


@pytest.mark.parametrize("frames_first", [True, False])
def test_3d_cube_reads_as_the_maps(tmp_path, frames_first):
    maps = _maps()
    path = _write_cube(tmp_path / "cube.fits", maps, frames_first=frames_first)
    prepared = prepare_burst(path)
    _assert_same_frames(prepared, maps)
    assert prepared.channels[0].files == [str(path)]


def test_multi_extension_burst_reads_as_the_maps(tmp_path):
    maps = _maps()
    path = _write_extensions(tmp_path / "burst.fits", maps)
    _assert_same_frames(prepare_burst([path]), maps)
    by_name = prepare_burst(path, hdu=["FRAME0", 3])
    _assert_same_frames(by_name, [maps[0], maps[2]])
    with pytest.raises(ValueError, match=r"burst\.fits has no image HDU 'FRAME7'; its HDUs: 0 'PRIMARY', 1 'FRAME0'"):
        prepare_burst(path, hdu="FRAME7")
    with pytest.raises(ValueError, match=r"hdu=1 selects HDUs of FITS files, but the frames are a list"):
        prepare_burst(maps, hdu=1)


def test_cube_and_extensions_restore_as_the_maps(tmp_path):
    maps = _maps()
    cube = _write_cube(tmp_path / "cube.fits", maps)
    extensions = _write_extensions(tmp_path / "burst.fits", maps)
    reference = deconvolve(sunpy.map.Map(maps, sequence=True), **FAST)
    for source in (cube, extensions):
        result = deconvolve(source, **FAST)
        np.testing.assert_array_equal(result.data, reference.data)
        np.testing.assert_array_equal(result.mask, reference.mask)
        assert result.meta["momfbd"]["input"]["files"] == [str(source)]


def test_frame_errors_name_the_file_and_plane(tmp_path):
    maps = _maps()
    path = _write_cube(tmp_path / "cube.fits", maps)
    with fits.open(path, mode="update") as hdul:
        hdul[0].data[1] = 7.0
    with pytest.raises(ValueError, match=r"frame 1 \(cube\.fits plane 1\) is constant \(7 everywhere"):
        prepare_burst(path)
    _, labels = read_fits_frames(path)
    assert labels == ["cube.fits plane 0", "cube.fits plane 1", "cube.fits plane 2"]


def test_headers_sunpy_refuses_are_named_with_their_file(tmp_path):
    header = fits.Header(make_header())
    header["CUNIT1"] = "m"  # not an angle: sunpy's Map refuses the coordinate system
    path = tmp_path / "frame.fits"
    fits.PrimaryHDU(np.ones((48, 48)), header).writeto(path)
    with pytest.raises(ValueError, match=r"frame\.fits: sunpy cannot make a Map of this frame's header: .*angular"):
        read_fits_frames(path)


def test_unreadable_inputs_are_named(tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"input {tmp_path} is a directory, not a FITS file"):
        prepare_burst([tmp_path])
    text = tmp_path / "notes.fits"
    text.write_text("not FITS")
    with pytest.raises(OSError, match=r"cannot read .*notes\.fits as FITS"):
        prepare_burst([text])
    four = tmp_path / "four.fits"
    fits.writeto(four, np.zeros((2, 2, 8, 8)))
    with pytest.raises(ValueError, match=r"four\.fits has 4-D data of shape \(2, 2, 8, 8\)"):
        prepare_burst(four)


def test_command_line_reads_extensions_selects_and_aligns(tmp_path, capsys):
    from sunpy_momfbd import cli, load

    path = _write_extensions(tmp_path / "burst.fits", _maps())
    output = tmp_path / "out.asdf"
    fast = ["--iterations", "1", "--option", "init_iterations=0", "--quiet"]
    args = ["deconvolve", str(path), "--hdu", "FRAME0,2,3", "--select", "2", "--align", "pixel", "-o", str(output)]
    assert cli.main([*args, *fast]) == 0
    preprocess = load(output).meta["momfbd"]["preprocess"]
    assert len(preprocess["selected"]) == 2
    assert preprocess["align"]["method"] == "pixel"
    capsys.readouterr()
    assert cli.main(["deconvolve", str(path), "--hdu", "FRAME7", "-o", str(tmp_path / "x.asdf"), *fast]) == 2
    assert "has no image HDU 'FRAME7'" in capsys.readouterr().err
