import pathlib

import pytest

import astropy.units as u
from astropy.io import fits

from sunpy_momfbd.instruments import (
    INSTRUMENTS,
    TELESCOPES,
    Telescope,
    available_instruments,
    get_instrument,
    get_telescope,
    match_metadata,
    optical_setup,
    wavelength_from_meta,
)
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning


def test_registry_has_required_entries():
    for name in ("SST", "GREGOR", "DKIST", "GST", "NVST", "DST", "VTT"):
        assert name in TELESCOPES
        assert TELESCOPES[name].source
    for name in ("CRISP", "CHROMIS", "HiFI+", "VBI"):
        assert name in INSTRUMENTS
        assert INSTRUMENTS[name].telescope in TELESCOPES
        assert INSTRUMENTS[name].source
    assert TELESCOPES["SST"].diameter == 0.97 * u.m
    assert TELESCOPES["DKIST"].obscuration_ratio == 0
    assert TELESCOPES["GREGOR"].obscuration_ratio == pytest.approx(0.4 / 1.44)
    assert INSTRUMENTS["CHROMIS"].default_plate_scale == 0.0379 * u.arcsec / u.pix
    listing = available_instruments()
    assert "CRISP" in listing["SST"]
    assert "VBI" in listing["DKIST"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Swedish 1-meter Solar Telescope (SST)", "SST"),
        ("swedish 1-meter solar telescope", "SST"),
        ("SST", "SST"),
        ("Daniel K. Inouye Solar Telescope", "DKIST"),
        ("dkist", "DKIST"),
        ("BBSO/GST", "GST"),
        ("Goode Solar Telescope", "GST"),
        ("GREGOR", "GREGOR"),
        ("Dunn Solar Telescope", "DST"),
        ("vacuum tower telescope", "VTT"),
        ("NVST", "NVST"),
    ],
)
def test_telescope_aliases(text, expected):
    assert get_telescope(text).name == expected


@pytest.mark.parametrize(
    ("instrume", "telescope", "instrument"),
    [("CRISP", "SST", "CRISP"), ("chromis", "SST", "CHROMIS"), ("HiFI+", "GREGOR", "HiFI+"), ("VBI", "DKIST", "VBI")],
)
def test_match_from_instrument_only(instrume, telescope, instrument):
    found, inst = match_metadata({"INSTRUME": instrume})
    assert found.name == telescope
    assert inst.name == instrument


def test_match_case_insensitive_keys():
    found, inst = match_metadata({"telescop": "Swedish 1-meter Solar Telescope", "instrume": "crisp"})
    assert (found.name, inst.name) == ("SST", "CRISP")
    assert get_instrument("nothing known") is None


def test_unknown_telescope_lists_known_and_how_to_pass():
    with pytest.raises(ValueError, match=r"unknown telescope \(TELESCOP = 'Mystery Scope'\)") as info:
        match_metadata({"TELESCOP": "Mystery Scope"})
    message = str(info.value)
    for name in TELESCOPES:
        assert name in message
    assert "Telescope(diameter=" in message
    with pytest.raises(ValueError, match="no TELESCOP keyword"):
        match_metadata({})
    with pytest.raises(ValueError, match="known telescopes"):
        get_telescope("nope")


def test_override_telescope():
    custom = Telescope(diameter=1.5 * u.m, obscuration=0.4 * u.m)
    found, _ = match_metadata({"TELESCOP": "Mystery Scope"}, telescope=custom)
    assert found is custom
    found, _ = match_metadata({"TELESCOP": "Swedish 1-meter Solar Telescope"}, telescope="GREGOR")
    assert found.name == "GREGOR"


def test_telescope_validation():
    assert Telescope(diameter=2 * u.m, obscuration=0.25 * u.one).obscuration == 0.5 * u.m
    assert Telescope(diameter=100 * u.cm).diameter == 1 * u.m
    with pytest.raises(ValueError, match="diameter"):
        Telescope(diameter=-1 * u.m)
    with pytest.raises(ValueError, match="diameter"):
        Telescope(diameter=1 * u.s)
    with pytest.raises(ValueError, match="obscuration"):
        Telescope(diameter=1 * u.m, obscuration=1.2 * u.m)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"WAVELNTH": 630.2, "WAVEUNIT": -9}, 630.2 * u.nm),  # SOLARNET power of ten (SST, DKIST L1)
        ({"WAVELNTH": 630.2, "WAVEUNIT": "-9"}, 630.2 * u.nm),
        ({"WAVELNTH": 6302.0, "WAVEUNIT": -10}, 630.2 * u.nm),
        ({"wavelnth": 6302.0, "waveunit": "Angstrom"}, 630.2 * u.nm),
        ({"wavelnth": 0.6302, "waveunit": "um"}, 630.2 * u.nm),
        # DKIST VBI: no WAVEUNIT, but a spectral WCS axis with CUNIT3
        ({"WAVELNTH": 450.4, "CTYPE3": "AWAV", "CUNIT3": "nm"}, 450.4 * u.nm),
    ],
)
def test_wavelength_units(meta, expected):
    assert u.isclose(wavelength_from_meta(meta), expected)


def test_wavelength_without_unit_is_guessed_with_warning():
    with pytest.warns(SunpyMomfbdUserWarning, match="has no WAVEUNIT; assuming nm"):
        assert wavelength_from_meta({"WAVELNTH": 854.2}) == 854.2 * u.nm
    with pytest.warns(SunpyMomfbdUserWarning, match="assuming Angstrom"):
        assert u.isclose(wavelength_from_meta({"WAVELNTH": 6563.0}), 656.3 * u.nm)


def test_wavelength_errors():
    assert wavelength_from_meta({}) is None
    with pytest.raises(ValueError, match="WAVEUNIT = 'furlong' is not a length"):
        wavelength_from_meta({"WAVELNTH": 1.0, "WAVEUNIT": "furlong"})
    with pytest.raises(ValueError, match="not a number"):
        wavelength_from_meta({"WAVELNTH": "red"})
    with pytest.raises(ValueError, match="not positive"):
        wavelength_from_meta({"WAVELNTH": -5.0, "WAVEUNIT": "nm"})


def test_real_dkist_header():
    import sunkit_image

    path = pathlib.Path(sunkit_image.__file__).parent / "data" / "test" / "dkist_photosphere.fits"
    header = fits.getheader(path)
    assert "WAVEUNIT" not in header
    telescope, instrument = match_metadata(header)
    assert (telescope.name, instrument.name) == ("DKIST", "VBI")
    assert wavelength_from_meta(header) == 450.4 * u.nm


def test_optical_setup():
    setup = optical_setup("SST", 630.2 * u.nm, 0.044 * u.arcsec / u.pix)
    assert setup.sampling == pytest.approx(3.046, abs=1e-3)
    assert setup.obscuration == 0
    gregor = optical_setup(TELESCOPES["GREGOR"], 430.7 * u.nm, 0.02761 * u.arcsec / u.pix, n_modes=20)
    assert gregor.obscuration == pytest.approx(0.4 / 1.44)
    assert gregor.n_modes == 20
    with pytest.raises(u.UnitsError):
        optical_setup("SST", 630.2 * u.s, 0.044 * u.arcsec / u.pix)
