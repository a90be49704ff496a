r"""
Kolmogorov turbulence statistics and the Karhunen–Loève (KL) wavefront basis.

The basis is tip and tilt followed by KL modes: linear combinations of the Zernike polynomials of
Noll indices 3 < j <= n_modes + 1 that diagonalise the Kolmogorov covariance. Everything is computed
here from the phase structure function :math:`D(r) = 6.88\,(r/r_0)^{5/3}` over the actual
(possibly annular) pupil, so no tabulated numbers are needed and obscured pupils get their own
modes. Coefficients are radians of phase, modes have unit RMS over the pupil.

References
----------
.. [1] Noll, R. J. 1976, J. Opt. Soc. Am. 66, 207.
.. [2] Wang, J. Y. & Markey, J. K. 1978, J. Opt. Soc. Am. 68, 78.
"""

from functools import lru_cache
from math import gamma

import numpy as np

from sunpy_momfbd.optics.pupil import aperture, pupil_coordinates
from sunpy_momfbd.optics.zernike import noll_to_nm, zernike
from sunpy_momfbd.utils.checks import positive_int

__all__ = [
    "even_modes",
    "kl_covariance",
    "kl_modes",
    "kl_projection",
    "kl_variance",
    "random_coefficients",
    "unresolved_transfer",
]

#: Pupil diameter in pixels of the grid on which the KL basis and its covariance are computed.
_BASIS_GRID = 128
#: Smallest acceptable eigenvalue of the modes' Gram matrix on a grid (below it they are degenerate).
_MIN_GRAM_EIGENVALUE = 1e-3
#: Number of removed modes (piston included) above which Noll's asymptotic residual law holds.
_NOLL_ASYMPTOTIC = 10
#: Kolmogorov phase structure function constant, D(r) = 6.88 (r / r0)^(5/3).
_STRUCTURE_CONSTANT = 2 * (24 / 5 * gamma(6 / 5)) ** (5 / 6)


def kl_modes(n_modes, npix, obscuration=0.0, diameter=None):
    """
    Tip, tilt and Karhunen–Loève modes sampled on a square grid.

    Parameters
    ----------
    n_modes : int
        Number of modes (Noll-like indices 2 … n_modes + 1).
    npix : int
        Grid size in pixels.
    obscuration : float, optional
        Central obscuration as a fraction of the pupil diameter.
    diameter : float, optional
        Pupil diameter in pixels, ``npix`` by default.

    Returns
    -------
    `numpy.ndarray`
        Modes of shape (n_modes, npix, npix), zero outside the pupil. Mode 0 is tip (x), mode 1
        tilt (y), then KL modes in order of decreasing Kolmogorov variance. Each has unit RMS over
        the pupil; signs are fixed so that each mode's largest Zernike component is positive.

    Notes
    -----
    The KL modes diagonalise the covariance within the Zernike polynomials of Noll indices up to
    ``n_modes + 1``, so a set is not the first modes of a larger set: the high modes of
    ``kl_modes(44)`` mix Zernikes of radial orders up to 8 only, while the first 44 of
    ``kl_modes(100)`` reach higher orders. Convert coefficients between sets with
    `kl_projection` (a least-squares fit over the pupil), not by truncation.

    Examples
    --------
    >>> from sunpy_momfbd.optics import kl_modes
    >>> kl_modes(44, 64).shape
    (44, 64, 64)
    """
    return _kl_modes(
        positive_int("n_modes", n_modes),
        positive_int("npix", npix),
        float(obscuration),
        None if diameter is None else float(diameter),
    ).copy()


def kl_projection(n_modes, n_source, obscuration=0.0):
    """
    Matrix taking coefficients of ``n_source`` modes to the ``n_modes`` modes that fit them best.

    The least-squares fit over the pupil of the wavefront the source coefficients describe (the
    modes are orthonormal over it, so this is their overlap). A set of modes is not the first
    modes of a larger set (see `kl_modes`), so truncating would be wrong.

    Parameters
    ----------
    n_modes : int
        Number of modes fitted.
    n_source : int
        Number of modes of the coefficients to convert.
    obscuration : float, optional
        Central obscuration as a fraction of the pupil diameter.

    Returns
    -------
    `numpy.ndarray`
        Shape (n_modes, n_source): ``kl_projection(n, m) @ c`` fits the wavefront of ``c``.

    Examples
    --------
    >>> import numpy as np
    >>> from sunpy_momfbd.optics import kl_projection
    >>> bool(np.allclose(kl_projection(44, 44), np.eye(44)))
    True
    """
    weight = aperture(_BASIS_GRID, float(obscuration)).reshape(-1)
    fitted = kl_modes(n_modes, _BASIS_GRID, obscuration).reshape(n_modes, -1)
    source = kl_modes(n_source, _BASIS_GRID, obscuration).reshape(n_source, -1)
    return (fitted * weight) @ source.T / weight.sum()


def kl_covariance(n_modes, obscuration=0.0):
    """
    Covariance of the modal coefficients for Kolmogorov turbulence at D/r0 = 1.

    Multiply by :math:`(D/r_0)^{5/3}` for other seeing. The KL block is diagonal; tip and tilt
    keep their (small) correlation with the KL modes of the same azimuthal symmetry.

    Parameters
    ----------
    n_modes : int
        Number of modes.
    obscuration : float, optional
        Central obscuration as a fraction of the pupil diameter.

    Returns
    -------
    `numpy.ndarray`
        Covariance matrix in rad², shape (n_modes, n_modes).
    """
    return _kl_basis(positive_int("n_modes", n_modes), float(obscuration))[1].copy()


def kl_variance(n_modes, obscuration=0.0):
    """
    Variance of each modal coefficient for Kolmogorov turbulence at D/r0 = 1.

    Parameters
    ----------
    n_modes : int
        Number of modes.
    obscuration : float, optional
        Central obscuration as a fraction of the pupil diameter.

    Returns
    -------
    `numpy.ndarray`
        Variances in rad², shape (n_modes,); scale by :math:`(D/r_0)^{5/3}`.

    Examples
    --------
    >>> from sunpy_momfbd.optics import kl_variance
    >>> variance = kl_variance(44)
    >>> round(float(variance[:2].sum()), 2)  # tip + tilt, Noll's Δ1 - Δ3 = 0.896
    0.9
    """
    return np.diag(kl_covariance(n_modes, obscuration)).copy()


def even_modes(n_modes, obscuration=0.0):
    """
    Which modes are even under point reflection of the pupil, r → −r.

    A mode built from Zernike polynomials of azimuthal order m changes sign under r → −r when m is
    odd (tip, tilt, coma, …) and keeps it when m is even (defocus, astigmatism, …). For a pupil
    symmetric under r → −r the wavefronts φ and −φ(−r) have the same PSF, so flipping the sign of
    all even-mode coefficients of a wavefront leaves its PSF unchanged: the "twin" that blind
    wavefront estimation cannot tell apart without phase diversity.

    Parameters
    ----------
    n_modes : int
        Number of modes.
    obscuration : float, optional
        Central obscuration as a fraction of the pupil diameter.

    Returns
    -------
    `numpy.ndarray`
        Boolean, shape (n_modes,), True for even modes.

    Examples
    --------
    >>> from sunpy_momfbd.optics import even_modes
    >>> "".join("E" if even else "O" for even in even_modes(9))
    'OOEEEOOOO'
    """
    transform = _kl_basis(positive_int("n_modes", n_modes), float(obscuration))[0]
    # Each mode mixes Zernikes of one symmetry class; its largest component (Noll j = row + 1) names it.
    orders = [noll_to_nm(int(np.argmax(np.abs(column))) + 1)[1] for column in transform.T]
    return np.array([m % 2 == 0 for m in orders])


def random_coefficients(n, d_over_r0, n_modes=44, rng=None, obscuration=0.0):
    """
    Draw modal coefficients of Kolmogorov wavefronts.

    Parameters
    ----------
    n : int
        Number of wavefronts.
    d_over_r0 : float or array_like
        Ratio of the pupil diameter to Fried's parameter, a scalar or one value per wavefront.
    n_modes : int, optional
        Number of modes, 44 by default.
    rng : `numpy.random.Generator` or int, optional
        Random generator or seed.
    obscuration : float, optional
        Central obscuration as a fraction of the pupil diameter.

    Returns
    -------
    `numpy.ndarray`
        Coefficients in radians, shape (n, n_modes), drawn from the full covariance
        `kl_covariance` scaled by :math:`(D/r_0)^{5/3}`.
    """
    n = positive_int("n", n)
    d_over_r0 = np.broadcast_to(np.asarray(d_over_r0, dtype=float), (n,))
    if not np.all(np.isfinite(d_over_r0)) or np.any(d_over_r0 < 0):
        msg = f"d_over_r0 must be finite and non-negative, got {d_over_r0}"
        raise ValueError(msg)
    rng = np.random.default_rng(rng)
    chol = _kl_basis(positive_int("n_modes", n_modes), float(obscuration))[2]
    unit = rng.standard_normal((n, chol.shape[0])) @ chol.T
    return unit * d_over_r0[:, None] ** (5 / 6)


def unresolved_transfer(frequency, n_modes, d_over_r0, obscuration=0.0):
    r"""
    Average transfer function of the Kolmogorov wavefront that ``n_modes`` modes leave out.

    A fit of ``n_modes`` modes misses the rest of the turbulent phase (Noll: a variance of about
    :math:`0.2944\,J^{-\sqrt{3}/2}(D/r_0)^{5/3}` rad² beyond J modes). On average over frames that
    remainder spreads light into a halo, the long-exposure transfer function
    :math:`T(\rho) = \exp(-\tfrac12 D_{\rm res}(\rho))` of its structure function, which is the
    Kolmogorov one, :math:`6.88\,(\rho/r_0)^{5/3}`, less the part the fitted modes carry (averaged
    over the pupil and over directions).

    Parameters
    ----------
    frequency : array_like
        Spatial frequencies in units of the diffraction cutoff D/λ (0 to 1).
    n_modes : int
        Number of modes fitted (tip, tilt and KL modes).
    d_over_r0 : float
        Seeing, D/r0, at the wavelength of the frequencies.
    obscuration : float, optional
        Central obscuration as a fraction of the pupil diameter.

    Returns
    -------
    `numpy.ndarray`
        T, between 0 and 1, the shape of ``frequency``; 1 at zero frequency.

    Examples
    --------
    >>> from sunpy_momfbd.optics import unresolved_transfer
    >>> [round(float(t), 2) for t in unresolved_transfer([0.0, 0.5], 44, 10.0)]
    [1.0, 0.6]
    """
    separation, structure = _unresolved_structure(positive_int("n_modes", n_modes), float(obscuration))
    frequency = np.clip(np.asarray(frequency, dtype=float), 0, 1)
    residual = np.interp(frequency, separation, structure) * float(d_over_r0) ** (5 / 3)
    return np.exp(-0.5 * residual)


@lru_cache(maxsize=16)
def _unresolved_structure(n_modes, obscuration, npix=64):
    """
    Structure function at D/r0 = 1 of the phase beyond ``n_modes`` modes, against separation in D.

    The fitted modes' share is the pupil average of their squared differences at each separation,
    from correlations with the pupil computed by FFT, averaged over directions.
    """
    weight = aperture(npix, obscuration)
    modes = _kl_modes(n_modes, npix, obscuration, None)
    variance = kl_variance(n_modes, obscuration)
    size = 2 * npix

    def correlate(a, b):
        return np.fft.irfft2(np.fft.rfft2(a, s=(size, size)).conj() * np.fft.rfft2(b, s=(size, size)), s=(size, size))

    overlap = correlate(weight, weight)
    differences = 0
    for mode, value in zip(modes, variance, strict=True):
        squared = correlate(weight, weight * mode**2)
        differences = differences + value * (
            squared + np.roll(squared[::-1, ::-1], 1, axis=(0, 1)) - 2 * correlate(weight * mode, weight * mode)
        )
    offset = np.fft.fftfreq(size, 1 / size)
    distance = np.hypot(offset[:, None], offset[None, :]) / npix  # in pupil diameters
    inside = overlap > 0.05 * overlap.max()
    fitted = np.where(inside, differences / np.where(inside, overlap, 1), 0)
    bins = np.linspace(0, 1, 33)
    centres = 0.5 * (bins[1:] + bins[:-1])
    index = np.digitize(distance[inside], bins) - 1
    keep = (index >= 0) & (index < len(centres))
    profile = np.bincount(index[keep], fitted[inside][keep], len(centres)) / np.maximum(
        np.bincount(index[keep], minlength=len(centres)), 1
    )
    separation = np.concatenate([[0.0], centres])
    structure = _STRUCTURE_CONSTANT * separation ** (5 / 3) - np.concatenate([[0.0], profile])
    structure = np.clip(structure, 0, None)
    if n_modes + 1 > _NOLL_ASYMPTOTIC:
        # The residual of many modes decorrelates within a fraction of the pupil; beyond, its
        # structure function is twice its variance, where the difference of two large numbers
        # above would only add discretisation noise.
        structure = np.minimum(np.maximum.accumulate(structure), 2 * _residual_variance(n_modes))
    return separation, structure


def _residual_variance(n_modes):
    """Kolmogorov phase variance (D/r0 = 1) beyond piston and ``n_modes`` modes: Noll's law for J > 10."""
    return 0.2944 * (n_modes + 1) ** (-np.sqrt(3) / 2)


@lru_cache(maxsize=32)
def _kl_modes(n_modes, npix, obscuration, diameter):
    transform = _kl_basis(n_modes, obscuration)[0]
    rho, theta = pupil_coordinates(npix, diameter)
    zernikes = np.stack([zernike(j, rho, theta) for j in range(1, n_modes + 2)])
    weight = aperture(npix, obscuration, diameter=diameter)
    inside = weight > 0
    modes = np.einsum("jyx,jk->kyx", zernikes, transform) * inside
    # A coarse pupil changes the modes' discrete norms (by tens of percent for high orders on a
    # 32-pixel pupil) and their orthogonality to piston, so re-orthonormalise them over this grid
    # in mode order after piston (which is then dropped; tip and tilt keep their shape).
    modes = np.concatenate([inside[None].astype(float), modes])
    gram = np.einsum("iyx,jyx,yx->ij", modes, modes, weight) / weight.sum()
    if np.linalg.eigvalsh(gram)[0] < _MIN_GRAM_EIGENVALUE:
        msg = (
            f"a pupil {npix if diameter is None else diameter:.3g} pixels across is too coarse to carry "
            f"{n_modes} independent modes: use a larger grid or fewer modes"
        )
        raise ValueError(msg)
    cholesky = np.linalg.cholesky(gram)
    modes = np.einsum("jyx,kj->kyx", modes, np.linalg.inv(cholesky))[1:]
    modes.flags.writeable = False
    return modes


@lru_cache(maxsize=16)
def _kl_basis(n_modes, obscuration):
    """
    Zernike → mode transform (n_modes + 1, n_modes), covariance at D/r0 = 1 and its Cholesky factor.
    """
    weight = aperture(_BASIS_GRID, obscuration)
    rho, theta = pupil_coordinates(_BASIS_GRID)
    zernikes = np.stack([zernike(j, rho, theta) for j in range(1, n_modes + 2)])
    area = weight.sum()

    # Orthonormalise in Noll order over the (annular) pupil, piston first, then drop piston.
    gram = np.einsum("iyx,jyx,yx->ij", zernikes, zernikes, weight) / area
    to_orthonormal = np.linalg.inv(np.linalg.cholesky(gram)).T[:, 1:]
    orthonormal = np.einsum("jyx,jk->kyx", zernikes, to_orthonormal)
    # Modes of different symmetry class (m, cos/sin) are uncorrelated over a circular or annular
    # pupil; zero the grid's tiny leakage and diagonalise class by class, so degenerate pairs stay pure.
    classes = [_symmetry_class(j) for j in range(2, n_modes + 2)]
    same_class = np.equal.outer(classes, classes)
    covariance = _kolmogorov_covariance(orthonormal, weight) * same_class
    rotation = np.zeros((n_modes, n_modes))
    rotation[[0, 1], [0, 1]] = 1.0
    columns = []
    for cls in sorted(set(classes[2:])):
        members = [i for i in range(2, n_modes) if classes[i] == cls]
        variance, vectors = np.linalg.eigh(covariance[np.ix_(members, members)])
        for value, vector in zip(variance, vectors.T, strict=True):
            vector = vector * np.sign(vector[np.argmax(np.abs(vector))])
            columns.append((-round(value, 10), cls, members, vector))
    for k, (_, _, members, vector) in enumerate(sorted(columns, key=lambda c: c[:2]), start=2):
        rotation[members, k] = vector

    kl_cov = rotation.T @ covariance @ rotation
    kl_cov = 0.5 * (kl_cov + kl_cov.T)
    return to_orthonormal @ rotation, kl_cov, np.linalg.cholesky(kl_cov)


def _symmetry_class(j):
    """Azimuthal frequency m and parity (cos or sin) of Noll index j, packed as 2 m + parity."""
    m = noll_to_nm(j)[1]
    return 2 * m + (0 if m == 0 else j % 2)


def _kolmogorov_covariance(modes, weight):
    """
    Covariance of the projections of a Kolmogorov phase (D/r0 = 1) on zero-mean modes.

    For modes orthogonal to piston the phase covariance can be replaced by minus half the
    structure function, whose convolution with each mode is done by FFT on a padded grid.
    """
    npix = weight.shape[-1]
    size = 2 * npix
    offset = np.fft.fftfreq(size, 1 / size)
    distance = np.hypot(offset[:, None], offset[None, :]) / npix  # in pupil diameters
    structure = _STRUCTURE_CONSTANT * distance ** (5 / 3)
    weighted = modes * weight
    spectrum = np.fft.rfft2(weighted, s=(size, size))
    smoothed = np.fft.irfft2(spectrum * np.fft.rfft2(structure), s=(size, size))[:, :npix, :npix]
    area = weight.sum()
    covariance = -0.5 * np.einsum("iyx,jyx->ij", weighted, smoothed) / area**2
    return 0.5 * (covariance + covariance.T)
