"""OpticalSetup: physical construction and input validation."""

import numpy as np
import pytest

import astropy.units as u

from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning


def test_sampling_from_quantities_in_any_units():
    setup = OpticalSetup.from_quantities(630.2 * u.nm, 0.97 * u.m, 0.044 * u.arcsec / u.pix)
    expected = (630.2e-9 / 0.97) * 206264.806 / 0.044
    assert setup.sampling == pytest.approx(expected, rel=1e-6)
    assert setup.wavelength == 630.2 * u.nm
    same = OpticalSetup.from_quantities(6302 * u.AA, 97 * u.cm, 44 * u.mas / u.pix)
    assert same.sampling == pytest.approx(setup.sampling, rel=1e-12)


def test_obscuration_is_a_fraction_of_the_diameter():
    setup = OpticalSetup.from_quantities(430 * u.nm, 1.5 * u.m, 0.025 * u.arcsec / u.pix, obscuration=0.4 * u.m)
    assert setup.obscuration == pytest.approx(0.4 / 1.5)


def test_undersampling_warns():
    with pytest.warns(SunpyMomfbdUserWarning, match="below Nyquist"):
        OpticalSetup(sampling=1.5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sampling": 0}, "sampling"),
        ({"sampling": -2}, "sampling"),
        ({"sampling": np.nan}, "sampling"),
        ({"sampling": "fast"}, "sampling"),
        ({"sampling": 3, "obscuration": 1.0}, "obscuration"),
        ({"sampling": 3, "obscuration": -0.1}, "obscuration"),
        ({"sampling": 3, "n_modes": 0}, "n_modes"),
        ({"sampling": 3, "n_modes": 2.5}, "n_modes"),
        ({"sampling": 3, "wavelength": -5 * u.nm}, "wavelength"),
        ({"sampling": 3, "wavelength": 5 * u.s}, "wavelength"),
    ],
)
def test_nonsense_raises_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        OpticalSetup(**kwargs)


def test_from_quantities_rejects_bad_values():
    with pytest.raises(ValueError, match="diameter"):
        OpticalSetup.from_quantities(630 * u.nm, 0 * u.m, 0.05 * u.arcsec / u.pix)
    with pytest.raises(u.UnitsError):
        OpticalSetup.from_quantities(630 * u.s, 1 * u.m, 0.05 * u.arcsec / u.pix)
    with pytest.raises(ValueError, match="obscuration"):
        OpticalSetup.from_quantities(630 * u.nm, 1 * u.m, 0.05 * u.arcsec / u.pix, obscuration=1 * u.m)


def test_setup_is_frozen():
    setup = OpticalSetup(sampling=3)
    with pytest.raises(AttributeError):
        setup.sampling = 4
