"""
Validation summaries and certified ranges for the model card.

The emulator is certified inside a range of set-ups when its error against
`~sunpy_momfbd.forward.PhysicalForward` on spatially variant validation samples from that range
has a median and a 95th percentile below configured thresholds (3 % and 8 % by default). Ranges
are bins of D/r0 spanning the trained sampling and obscuration ranges; adjacent certified bins
are merged.
"""

import itertools

import numpy as np

__all__ = ["certified_ranges", "error_summary"]

#: Fewest validation samples a bin needs before it can be certified.
MIN_SAMPLES_PER_BIN = 16


def error_summary(errors):
    """
    Median, 95th percentile, mean and count of relative errors.

    Parameters
    ----------
    errors : array_like

    Returns
    -------
    dict
        ``{"median", "p95", "mean", "n"}`` as plain floats and an int; NaNs if empty.
    """
    errors = np.asarray(errors, dtype=float)
    if errors.size == 0:
        return {"median": float("nan"), "p95": float("nan"), "mean": float("nan"), "n": 0}
    return {
        "median": float(np.median(errors)),
        "p95": float(np.percentile(errors, 95)),
        "mean": float(errors.mean()),
        "n": int(errors.size),
    }


def _bins(lo, hi, n_bins):
    edges = np.geomspace(lo, hi, n_bins + 1) if lo > 0 else np.linspace(lo, hi, n_bins + 1)
    return list(itertools.pairwise(edges))


def certified_ranges(errors, d_over_r0, trained_ranges, *, median_max=0.03, p95_max=0.08, n_bins=4):
    """
    Find the certified boxes of a model card, and the per-bin summary behind them.

    Parameters
    ----------
    errors : array_like
        Relative errors of spatially variant validation samples.
    d_over_r0 : array_like
        D/r0 of each sample.
    trained_ranges : dict
        ``{"sampling": [lo, hi], "obscuration": [lo, hi], "d_over_r0": [lo, hi]}``.
    median_max, p95_max : float, optional
        Thresholds (0.03 and 0.08 by default).
    n_bins : int, optional
        Number of log-spaced D/r0 bins, 4 by default.

    Returns
    -------
    certified : list of dict
        Model-card entries ``{"ranges", "error_threshold", "median_threshold", "validation"}``;
        empty if no bin meets the thresholds.
    bins : list of dict
        For every bin: its D/r0 range, the error summary and whether it is certified.
    """
    errors = np.asarray(errors, dtype=float)
    d_over_r0 = np.asarray(d_over_r0, dtype=float)
    lo, hi = trained_ranges["d_over_r0"]
    bins = []
    for index, (b_lo, b_hi) in enumerate(_bins(lo, hi, n_bins)):
        inside = (d_over_r0 >= b_lo) & ((d_over_r0 < b_hi) | ((index == n_bins - 1) & (d_over_r0 <= b_hi)))
        summary = error_summary(errors[inside])
        ok = summary["n"] >= MIN_SAMPLES_PER_BIN and summary["median"] <= median_max and summary["p95"] <= p95_max
        bins.append({"d_over_r0": [float(b_lo), float(b_hi)], **summary, "certified": bool(ok)})
    certified = []
    run = []
    for entry in [*bins, None]:
        if entry is not None and entry["certified"]:
            run.append(entry)
            continue
        if run:
            box = {key: list(value) for key, value in trained_ranges.items() if key != "d_over_r0"}
            box["d_over_r0"] = [run[0]["d_over_r0"][0], run[-1]["d_over_r0"][1]]
            certified.append(
                {
                    "ranges": box,
                    "error_threshold": float(p95_max),
                    "median_threshold": float(median_max),
                    "validation": "spatially variant validation set, relative RMS error / std of exact image",
                }
            )
            run = []
    return certified, bins
