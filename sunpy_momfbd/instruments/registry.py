"""
The registry: telescopes and imagers with their sources, looked up by name or by a frame's header.

The values and their sources are listed in `sunpy_momfbd.instruments`.
"""

import math
import re
from dataclasses import dataclass, field

import astropy.units as u

from sunpy_momfbd.instruments.headers import header_value
from sunpy_momfbd.optics import OpticalSetup

__all__ = [
    "INSTRUMENTS",
    "TELESCOPES",
    "Instrument",
    "Telescope",
    "available_instruments",
    "get_instrument",
    "get_telescope",
    "match_metadata",
    "optical_setup",
]


@dataclass(frozen=True)
class Telescope:
    """
    The pupil of a telescope.

    Parameters
    ----------
    diameter : `~astropy.units.Quantity`
        Pupil (clear aperture) diameter.
    obscuration : `~astropy.units.Quantity`, optional
        Diameter of the central obscuration as a length, or as a dimensionless fraction of the
        pupil diameter; 0 (no obscuration) by default.
    name : str, optional
        Name shown in provenance and error messages, "custom" by default.
    aliases : tuple of str, optional
        Other spellings of the name in ``TELESCOP`` headers (matched case-insensitively,
        ignoring punctuation).
    source : str, optional
        Where the numbers come from.

    Examples
    --------
    >>> import astropy.units as u
    >>> from sunpy_momfbd.instruments import Telescope
    >>> Telescope(diameter=1.5 * u.m, obscuration=0.4 * u.m).obscuration_ratio
    0.26666666666666666
    """

    diameter: u.Quantity
    obscuration: u.Quantity = 0 * u.m
    name: str = "custom"
    aliases: tuple = ()
    source: str = ""

    def __post_init__(self):
        diameter = u.Quantity(self.diameter)
        if diameter.unit.physical_type != "length" or not (math.isfinite(diameter.value) and diameter.value > 0):
            msg = f"Telescope diameter must be a positive length, got {self.diameter!r}"
            raise ValueError(msg)
        obscuration = u.Quantity(self.obscuration)
        if obscuration.unit.physical_type == "dimensionless":
            obscuration = obscuration.to_value(u.one) * diameter
        if obscuration.unit.physical_type != "length" or not (
            math.isfinite(obscuration.value) and 0 <= obscuration < diameter
        ):
            msg = (
                "Telescope obscuration must be a length smaller than the diameter (or a fraction in [0, 1)), "
                f"got {self.obscuration!r}"
            )
            raise ValueError(msg)
        object.__setattr__(self, "diameter", diameter.to(u.m))
        object.__setattr__(self, "obscuration", obscuration.to(u.m))
        object.__setattr__(self, "aliases", tuple(self.aliases))

    @property
    def obscuration_ratio(self):
        """Central obscuration as a fraction of the pupil diameter."""
        return float((self.obscuration / self.diameter).to_value(u.one))

    def to_dict(self):
        """
        Describe the telescope as a plain, serialisable dict (for provenance).

        Returns
        -------
        dict
        """
        return {"name": self.name, "diameter": self.diameter, "obscuration": self.obscuration}


@dataclass(frozen=True)
class Instrument:
    """
    An imager on a telescope, with its typical plate scales and wavelengths.

    Parameters
    ----------
    name : str
        Instrument name.
    telescope : str
        Key of its telescope in `TELESCOPES`.
    plate_scales : dict of str to `~astropy.units.Quantity`
        Typical plate scales by channel or period (informative: a frame's own ``CDELT`` wins).
    wavelengths : tuple of `~astropy.units.Quantity`
        Typical wavelengths.
    aliases : tuple of str
        Other spellings in ``INSTRUME`` headers.
    source : str
        Where the numbers come from.
    """

    name: str
    telescope: str
    plate_scales: dict = field(default_factory=dict)
    wavelengths: tuple = ()
    aliases: tuple = ()
    source: str = ""

    @property
    def default_plate_scale(self):
        """The first (most common) plate scale, or None."""
        return next(iter(self.plate_scales.values()), None)


_ARCSEC_PX = u.arcsec / u.pix

#: Known telescopes, keyed by short name. Sources: see the module docstring (and INSTRUMENTS.md).
TELESCOPES = {
    "SST": Telescope(
        0.97 * u.m,  # sstred red__initialize.pro TELESCOPE_D=0.97; 0.98 m clear aperture in Kleint+2020
        0 * u.m,  # refractor (singlet lens)
        name="SST",
        aliases=("Swedish 1-meter Solar Telescope (SST)", "Swedish 1-meter Solar Telescope", "Swedish Solar Telescope"),
        source="ISP-SST/sstred red__initialize.pro; Kleint et al. 2020, A&A 641, A27",
    ),
    "GREGOR": Telescope(
        1.44 * u.m,  # torchmfbd reproducibility/hifi cfg (1.5 m primary)
        0.40 * u.m,  # torchmfbd cfg; UNVERIFIED against a GREGOR paper
        name="GREGOR",
        aliases=("GREGOR Solar Telescope",),
        source="aasensio/torchmfbd reproducibility/hifi/*.yaml; AIP GREGOR pages (obscuration unverified)",
    ),
    "DKIST": Telescope(
        4.0 * u.m,  # 4 m clear aperture, 4.24 m primary
        0 * u.m,  # off-axis Gregorian
        name="DKIST",
        aliases=("Daniel K. Inouye Solar Telescope", "Inouye Solar Telescope", "ATST"),
        source="Rimmele et al. 2020, Sol. Phys. 295, 172; NSO DKIST FAQ",
    ),
    "GST": Telescope(
        1.6 * u.m,  # 1.6 m clear aperture, 1.7 m primary
        0 * u.m,  # off-axis, unobstructed
        name="GST",
        aliases=("Goode Solar Telescope", "BBSO/GST", "BBSO GST", "NST", "New Solar Telescope"),
        source="Goode Solar Telescope descriptions (BBSO)",
    ),
    "NVST": Telescope(
        0.98 * u.m,  # "pure aperture of 980 mm", Xu et al. 2013
        0 * u.m,  # UNVERIFIED
        name="NVST",
        aliases=("New Vacuum Solar Telescope",),
        source="Xu et al. 2013, IAU Symp. 300; Liu et al. 2014, RAA 14, 705 (obscuration unverified)",
    ),
    "DST": Telescope(
        0.76 * u.m,  # entrance window; 1.6 m primary
        0 * u.m,  # UNVERIFIED
        name="DST",
        aliases=("Dunn Solar Telescope", "Richard B. Dunn Solar Telescope", "Dunn", "Sac Peak"),
        source="NMSU Dunn Solar Telescope pages (obscuration unverified)",
    ),
    "VTT": Telescope(
        0.70 * u.m,  # primary, f = 46 m
        0 * u.m,  # UNVERIFIED
        name="VTT",
        aliases=("Vacuum Tower Telescope", "German Vacuum Tower Telescope"),
        source="IAC and AIP VTT pages (obscuration unverified)",
    ),
}

#: Known imagers, keyed by name. Sources: see the module docstring (and INSTRUMENTS.md).
INSTRUMENTS = {
    "CRISP": Instrument(
        "CRISP",
        "SST",
        plate_scales={
            "until 2022-08-18": 0.0592 * _ARCSEC_PX,  # sstred red_dates.pro
            "from 2022-08-19 (Ximea)": 0.044 * _ARCSEC_PX,  # sstred red_dates.pro
            "CRISP2": 0.050 * _ARCSEC_PX,  # sstred red_setupworkdir_crisp2.pro
        },
        wavelengths=(617.3 * u.nm, 630.2 * u.nm, 656.3 * u.nm, 854.2 * u.nm),  # sstred prefilters
        aliases=("CRISP2",),
        source="ISP-SST/sstred; Löfdahl et al. 2021, A&A 653, A68",
    ),
    "CHROMIS": Instrument(
        "CHROMIS",
        "SST",
        plate_scales={
            "2016 cameras": 0.0379 * _ARCSEC_PX,  # sstred red_setupworkdir_chromis.pro
            "from 2025-04-01 (Ximea)": 0.0355 * _ARCSEC_PX,  # sstred red_dates.pro
        },
        wavelengths=(393.4 * u.nm, 396.8 * u.nm, 486.1 * u.nm),  # partly unverified
        source="ISP-SST/sstred",
    ),
    "HiFI+": Instrument(
        "HiFI+",
        "GREGOR",
        plate_scales={
            "Ca II H": 0.02489 * _ARCSEC_PX,  # torchmfbd cfg
            "G band": 0.02761 * _ARCSEC_PX,  # torchmfbd cfg
            "TiO": 0.04979 * _ARCSEC_PX,  # torchmfbd cfg
        },
        wavelengths=(396.8 * u.nm, 430.7 * u.nm, 450.6 * u.nm, 656.3 * u.nm, 705.8 * u.nm),  # Denker+2023
        aliases=("HiFI", "HiFI Plus", "High-resolution Fast Imager"),
        source="Denker et al. 2023, JATIS 9, 015001; aasensio/torchmfbd configuration files",
    ),
    "VBI": Instrument(
        "VBI",
        "DKIST",
        plate_scales={
            "blue (level 1)": 0.0101236 * _ARCSEC_PX,  # sunkit-image dkist_photosphere.fits CDELT
            "blue (design)": 0.011 * _ARCSEC_PX,  # NSO VBI wiki
            "red (design)": 0.017 * _ARCSEC_PX,  # NSO VBI wiki
        },
        wavelengths=(430.5 * u.nm, 450.4 * u.nm, 656.3 * u.nm),
        aliases=("VBI-BLUE", "VBI-RED", "VBI Blue", "VBI Red", "Visible Broadband Imager"),
        source="NSO VBI wiki; header of sunkit-image dkist_photosphere.fits",
    ),
    "BFI": Instrument(
        "BFI",
        "GST",
        plate_scales={"TiO": 0.034 * _ARCSEC_PX},  # UNVERIFIED
        wavelengths=(705.7 * u.nm,),  # arXiv:2008.12779
        aliases=("Broadband Filter Imager", "GST/BFI"),
        source="arXiv:2008.12779 (plate scale unverified)",
    ),
    "NVST": Instrument(
        "NVST",
        "NVST",
        plate_scales={"TiO": 0.052 * _ARCSEC_PX, "H-alpha": 0.136 * _ARCSEC_PX},  # UNVERIFIED
        wavelengths=(656.3 * u.nm, 705.8 * u.nm, 854.2 * u.nm),  # Chen et al. 2016
        aliases=("NVST imaging system",),
        source="Chen et al. 2016, ATI 13, 75 (plate scales unverified)",
    ),
    "ROSA": Instrument(
        "ROSA",
        "DST",
        plate_scales={"Zyla (H-alpha)": 0.0845 * _ARCSEC_PX, "iXon": 0.06 * _ARCSEC_PX},  # UNVERIFIED
        wavelengths=(350.0 * u.nm, 393.4 * u.nm, 417.0 * u.nm, 430.0 * u.nm, 656.3 * u.nm),
        aliases=("HARDcam", "Rapid Oscillations in the Solar Atmosphere"),
        source="NMSU ROSA data-model page (unverified)",
    ),
    "IBIS": Instrument(
        "IBIS",
        "DST",
        plate_scales={"narrow band": 0.098 * _ARCSEC_PX},  # UNVERIFIED
        wavelengths=(617.3 * u.nm, 630.2 * u.nm, 656.3 * u.nm, 854.2 * u.nm),
        aliases=("Interferometric Bidimensional Spectrometer",),
        source="Arcetri IBIS page; Ermolli et al. 2022, A&A 661, A74 (unverified)",
    ),
}


def available_instruments():
    """
    One line per known telescope and its instruments.

    Returns
    -------
    dict of str to str
        Telescope name → diameter, obscuration and instruments.

    Examples
    --------
    >>> from sunpy_momfbd.instruments import available_instruments
    >>> available_instruments()["SST"]
    'D = 0.97 m, obscuration 0 m; instruments: CRISP, CHROMIS'
    """
    lines = {}
    for key, telescope in TELESCOPES.items():
        names = [i.name for i in INSTRUMENTS.values() if i.telescope == key]
        lines[key] = (
            f"D = {telescope.diameter.to_value(u.m):g} m, obscuration {telescope.obscuration.to_value(u.m):g} m; "
            f"instruments: {', '.join(names) or 'none registered'}"
        )
    return lines


def _normalise(text):
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def _match(text, table):
    """Key of ``table`` whose name or alias matches ``text`` (exactly, or as a whole word)."""
    if text is None or not str(text).strip():
        return None
    wanted = _normalise(text)
    for key, entry in table.items():
        if wanted in {_normalise(n) for n in (key, entry.name, *entry.aliases)}:
            return key
    words = set(re.findall(r"[a-z0-9+]+", str(text).lower()))
    for key, entry in table.items():
        for name in (key, entry.name, *entry.aliases):
            if len(name) >= 3 and " " not in name and name.lower() in words:
                return key
    return None


def _known_telescopes():
    return ", ".join(TELESCOPES)


def _how_to_pass():
    return "pass telescope=Telescope(diameter=..., obscuration=...) (CLI: --diameter/--obscuration)"


def get_telescope(name):
    """
    Look up a telescope by name or alias (case-insensitive).

    Parameters
    ----------
    name : str
        Name, alias, or a ``TELESCOP`` header value.

    Returns
    -------
    `Telescope`

    Raises
    ------
    ValueError
        If the telescope is unknown; the message lists the known ones and how to pass one.

    Examples
    --------
    >>> from sunpy_momfbd.instruments import get_telescope
    >>> get_telescope("Swedish 1-meter Solar Telescope (SST)").name
    'SST'
    """
    key = _match(name, TELESCOPES)
    if key is None:
        msg = f"unknown telescope {name!r}; known telescopes: {_known_telescopes()}; or {_how_to_pass()}"
        raise ValueError(msg)
    return TELESCOPES[key]


def get_instrument(name):
    """
    Look up an instrument by name or alias (case-insensitive).

    Parameters
    ----------
    name : str
        Name, alias, or an ``INSTRUME`` header value.

    Returns
    -------
    `Instrument` or None
        None if the instrument is not registered.
    """
    key = _match(name, INSTRUMENTS)
    return None if key is None else INSTRUMENTS[key]


def match_metadata(meta, *, telescope=None):
    """
    Find the telescope and instrument that recorded a frame.

    Parameters
    ----------
    meta : mapping
        Header-like metadata (``TELESCOP``, ``INSTRUME``; keys case-insensitive).
    telescope : `Telescope` or str, optional
        Override: a `Telescope`, or the name of a registered one.

    Returns
    -------
    telescope : `Telescope`
    instrument : `Instrument` or None

    Raises
    ------
    ValueError
        If no telescope is given and none can be identified; the message lists the known ones.
    """
    instrument = get_instrument(header_value(meta, "instrume"))
    if isinstance(telescope, Telescope):
        return telescope, instrument
    if telescope is not None:
        return get_telescope(telescope), instrument
    header_name = header_value(meta, "telescop")
    key = _match(header_name, TELESCOPES)
    if key is None and instrument is not None:
        key = instrument.telescope
    if key is None:
        described = f"TELESCOP = {header_name!r}" if header_name is not None else "no TELESCOP keyword"
        instrument_name = header_value(meta, "instrume")
        if instrument_name is not None:
            described += f", INSTRUME = {instrument_name!r}"
        msg = f"unknown telescope ({described}); known telescopes: {_known_telescopes()}; or {_how_to_pass()}"
        raise ValueError(msg)
    return TELESCOPES[key], instrument


#: Spectral CTYPEs whose CUNIT gives the wavelength unit when WAVEUNIT is absent.
@u.quantity_input
def optical_setup(telescope, wavelength: u.m, pixel_scale: u.arcsec / u.pix, *, n_modes=44):
    """
    Build the `~sunpy_momfbd.optics.OpticalSetup` of a channel on a telescope.

    Parameters
    ----------
    telescope : `Telescope` or str
        The telescope, or the name of a registered one.
    wavelength : `~astropy.units.Quantity`
        Observed wavelength.
    pixel_scale : `~astropy.units.Quantity`
        Plate scale, angle per pixel.
    n_modes : int, optional
        Number of wavefront modes, 44 by default.

    Returns
    -------
    `~sunpy_momfbd.optics.OpticalSetup`

    Examples
    --------
    >>> import astropy.units as u
    >>> from sunpy_momfbd.instruments import optical_setup
    >>> setup = optical_setup("SST", 630.2 * u.nm, 0.044 * u.arcsec / u.pix)
    >>> round(setup.sampling, 2)
    3.05
    """
    telescope = telescope if isinstance(telescope, Telescope) else get_telescope(telescope)
    return OpticalSetup.from_quantities(
        wavelength, telescope.diameter, pixel_scale, obscuration=telescope.obscuration, n_modes=n_modes
    )
