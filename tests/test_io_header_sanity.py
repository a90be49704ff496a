"""Wrong-but-parseable headers: a clear error naming the frame and file, or a documented handling."""

import numpy as np
import pytest
from helpers_io import make_header, make_maps

import astropy.units as u

import sunpy.map

from sunpy_momfbd.io import prepare_burst
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning


def _files(tmp_path, maps):
    paths = []
    for i, m in enumerate(maps):
        paths.append(tmp_path / f"f{i}.fits")
        m.save(paths[-1])
    return paths


def _edited(maps, **changes):
    edited = []
    for m in maps:
        meta = dict(m.meta) | {k: v for k, v in changes.items() if v is not None}
        for key in [k for k, v in changes.items() if v is None]:
            meta.pop(key, None)
        edited.append(sunpy.map.Map(m.data, meta))
    return edited


def test_angstrom_value_with_nm_waveunit_is_refused(tmp_path):
    files = _files(tmp_path, _edited(make_maps(3), wavelnth=6302.0, waveunit="nm"))
    with pytest.raises(
        ValueError, match=r"frame 0 \(f0\.fits\) has wavelength 6302 nm .*WAVEUNIT = 'nm'.* probably wrong"
    ):
        prepare_burst(files)
    # an explicit wavelength overrides the header
    assert prepare_burst(files, wavelength=630.2 * u.nm).channels[0].wavelength == 630.2 * u.nm


def test_absurd_sampling_is_refused():
    maps = _edited(make_maps(3), cunit1="arcmin", cunit2="arcmin")  # 0.044 arcmin, not arcsec
    with (
        pytest.raises(
            ValueError, match=r"frame 0: a sampling of 0\.0508 pixels per λ/D .* outside the plausible 0\.5 to 12"
        ),
        pytest.warns(SunpyMomfbdUserWarning, match="below Nyquist"),
    ):
        prepare_burst(maps)


def test_missing_cdelt_is_refused_unless_the_scale_is_given(tmp_path):
    files = _files(tmp_path, _edited(make_maps(3), cdelt1=None, cdelt2=None))
    with pytest.raises(ValueError, match=r"frame 0 \(f0\.fits\) has no pixel scale \(no CDELT1/CDELT2 .*1 arcsec"):
        prepare_burst(files)
    channel = prepare_burst(files, pixel_scale=0.044 * u.arcsec / u.pix).channels[0]
    assert channel.setup.sampling == pytest.approx(3.0463, rel=1e-3)


def test_flipped_axis_is_accepted_and_noted():
    maps = make_maps(3)
    flipped = _edited(maps, cdelt1=-0.044)
    prepared = prepare_burst(flipped)
    channel = prepared.channels[0]
    assert u.isclose(channel.pixel_scale, 0.044 * u.arcsec / u.pix)
    np.testing.assert_array_equal(channel.frames[0], maps[0].data)  # orientation kept, as the WCS says
    assert channel.wcs.wcs.cdelt[0] < 0
    assert any("flipped x axis" in note for note in prepared.notes)


def test_missing_date_obs_is_reported_and_left_out():
    maps = _edited(make_maps(3), **{"date-obs": None})
    with pytest.warns(SunpyMomfbdUserWarning, match=r"frame 0, frame 1, frame 2 \(3 of 3 frames\) have no DATE-OBS"):
        prepared = prepare_burst(maps)
    channel = prepared.channels[0]
    assert channel.times is None
    assert channel.wcs.wcs.dateobs == ""  # not sunpy's stand-in, the current time


def test_empty_sequence_and_complex_frames_are_refused():
    with pytest.raises(ValueError, match="the MapSequence is empty"):
        prepare_burst(sunpy.map.MapSequence([]))
    frames = np.ones((3, 32, 32)) * (1 + 1j)
    with pytest.raises(ValueError, match=r"frame 0 is complex \(complex128\): give real intensities"):
        prepare_burst(frames, telescope="SST", wavelength=630.2 * u.nm, pixel_scale=0.044 * u.arcsec / u.pix)


def test_frames_of_files_are_named_in_shape_errors(tmp_path):
    maps = [*make_maps(2), sunpy.map.Map(np.ones((40, 48)), make_header((40, 48)))]
    with pytest.raises(ValueError, match=r"frame 2 \(f2\.fits\) has shape \(40, 48\), but frame 0 \(f0\.fits\)"):
        prepare_burst(_files(tmp_path, maps))
