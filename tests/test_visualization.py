import numpy as np
import pytest
from helpers_io import small_restoration
from matplotlib.figure import Figure
from ndcube import NDCollection

from astropy.visualization.wcsaxes import WCSAxes

from sunpy_momfbd.visualization import azimuthal_power_spectrum, plot_restoration


def test_plot_restoration():
    burst, result = small_restoration()
    figure = plot_restoration(result, burst, reference=burst[0])
    assert isinstance(figure, Figure)
    axes = figure.axes
    assert len(axes) == 4
    assert all(isinstance(ax, WCSAxes) for ax in axes[:3])
    assert axes[-1].get_xlabel() == "spatial frequency / (D/λ)"
    assert len(axes[-1].get_lines()) == 4  # frame, restored, reference, cutoff
    figure.savefig(__import__("io").BytesIO(), format="png")


def test_plot_collection():
    burst, result = small_restoration()
    collection = NDCollection([("a", result), ("b", result)], aligned_axes="all")
    figure = plot_restoration(collection, {"a": burst, "b": burst}, frame=2)
    assert len(figure.axes) == 6
    with pytest.raises(TypeError, match="dict of channels"):
        plot_restoration(collection, burst)
    with pytest.raises(ValueError, match="frame 9 does not exist"):
        plot_restoration(result, burst, frame=9)


def test_power_spectrum_of_a_sinusoid():
    y, x = np.mgrid[:64, :64]
    frequency, power = azimuthal_power_spectrum(np.sin(2 * np.pi * 0.125 * x) + 0 * y)
    assert frequency[np.argmax(power)] == pytest.approx(0.125, abs=1 / 64)
    assert np.nansum(power) == pytest.approx(1.0)
    mask = np.zeros((64, 64), bool)
    mask[:8] = True
    frequency, _ = azimuthal_power_spectrum(np.random.default_rng(0).random((64, 64)), mask=mask)
    assert frequency[0] == pytest.approx(1.5 / 56)
