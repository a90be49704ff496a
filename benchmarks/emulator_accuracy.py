"""
Accuracy and speed of an emulator against the exact forward model.

Accuracy: on held-out spatially invariant and spatially variant sets (procedural scenes drawn
with a seed no training run uses, plus patches of the DKIST/VBI granulation image from
sunkit-image's test data, a real scene kept out of all training data), the relative error

    RMS(emulator - PhysicalForward) / std(PhysicalForward)

over interior pixels (``size // 8`` border pixels left out), with its median and 95th percentile
overall and broken down by sampling, obscuration and D/r0. For context it also reports the error
of a spatially invariant convolution with the field-mean wavefront on the spatially variant set
(what any invariant model can reach at best, roughly).

Speed: one 44-mode frame with an 8×8 mode grid at 256², 512² and 1024² through both models
(no gradients), median of repeats after warm-up, and the ratio PhysicalForward / emulator.

Writes ``benchmarks/results/emulator_accuracy.json`` and prints reStructuredText tables.

Usage::

    python benchmarks/emulator_accuracy.py [--emulator default|DIR] [--n 96] [--threads 1]
"""

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import sunpy_momfbd
from sunpy_momfbd.database import DegradationConfig, OnTheFlyDataset, array_patches, draw_sample, draw_setup
from sunpy_momfbd.forward import EmulatorForward, PhysicalForward
from sunpy_momfbd.io.atomic import atomic_write
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.training import error_summary, evaluate, relative_error

RESULTS = Path(__file__).parent / "results"
#: Seed of the held-out sets: never used by a training configuration shipped with the package.
HELD_OUT_SEED = 271828
BINS = {
    "sampling": [1.8, 2.5, 3.2, 4.0],
    "obscuration": [0.0, 0.12, 0.24, 0.35],
    "d_over_r0": [2.0, 5.0, 10.0, 20.0, 30.0],
}


def _vbi_patches(size, n, rng):
    try:
        import sunkit_image.data.test as test_data  # noqa: PLC0415

        from astropy.io import fits  # noqa: PLC0415
    except ImportError:
        return np.zeros((0, size, size), np.float32)
    path = Path(test_data.__file__).parent / "dkist_photosphere.fits"
    if not path.is_file():
        return np.zeros((0, size, size), np.float32)
    return array_patches(fits.getdata(path), size, n, rng=rng)


def held_out_samples(config, n, *, variant, vbi_fraction=0.25):
    """Held-out samples: procedural scenes and, for a fraction, VBI granulation patches."""
    rng = np.random.default_rng([HELD_OUT_SEED, int(variant)])
    n_vbi = round(n * vbi_fraction)
    vbi = _vbi_patches(config.size, n_vbi, rng)
    stream = OnTheFlyDataset(config, variant_fraction=float(variant)).samples(rng)
    samples, sources = [], []
    for index in range(n):
        if index < len(vbi):
            sample = draw_sample(config, rng, vbi[index], variant=variant, setup=draw_setup(config, rng))
            samples.append(
                {
                    key: torch.as_tensor(np.asarray(getattr(sample, key), dtype=np.float32))
                    for key in ("image", "blurred", "modes", "conditioning", "d_over_r0")
                }
            )
            sources.append("vbi")
        else:
            samples.append(next(stream))
            sources.append("procedural")
    return samples, sources


def _mean_wavefront_errors(samples, n_modes):
    errors = []
    for sample in samples:
        setup = OpticalSetup(
            sampling=float(sample["conditioning"][0]), obscuration=float(sample["conditioning"][1]), n_modes=n_modes
        )
        with torch.no_grad():
            approx = PhysicalForward(setup)(
                sample["image"][None].double(), sample["modes"][None].double().mean(dim=(-2, -1), keepdim=True)
            )
        size = sample["image"].shape[-1]
        errors.append(float(relative_error(approx, sample["blurred"][None], margin=size // 8)[0]))
    return np.array(errors)


def breakdown(measured):
    """Error summaries per bin of sampling, obscuration and D/r0."""
    result = {}
    for name, edges in BINS.items():
        values = measured[name]
        rows = []
        for lo, hi in itertools.pairwise(edges):
            inside = (values >= lo) & ((values < hi) | ((hi == edges[-1]) & (values <= hi)))
            rows.append({"range": [lo, hi], **error_summary(measured["error"][inside])})
        result[name] = rows
    return result


def _time(function, repeats):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def speed(emulator_name, sizes=(256, 512, 1024), repeats=3):
    """Time both models on one 44-mode frame with an 8×8 mode grid."""
    setup = OpticalSetup(sampling=3.0, obscuration=0.2)
    emulator = EmulatorForward.from_pretrained(emulator_name, setup)
    physical = PhysicalForward(setup)
    rows = []
    generator = torch.Generator().manual_seed(0)
    for size in sizes:
        obj = 1 + 0.2 * torch.rand(1, size, size, generator=generator)
        modes = 0.5 * torch.randn(1, 44, 8, 8, generator=generator)
        with torch.no_grad():
            t_emulator, raw_e = _time(lambda: emulator(obj, modes), repeats)
            t_physical, raw_p = _time(lambda: physical(obj, modes), repeats)
        rows.append(
            {
                "size": size,
                "emulator_s": t_emulator,
                "physical_s": t_physical,
                "ratio_physical_over_emulator": t_physical / t_emulator,
                "raw_emulator_s": raw_e,
                "raw_physical_s": raw_p,
            }
        )
    return rows


def _table(title, entry):
    """One reStructuredText list-table of an accuracy entry: overall, by source, by bins."""
    lines = [
        f"{title}:",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - subset",
        "     - n",
        "     - median",
        "     - 95th percentile",
    ]
    rows = [("all", entry["overall"])]
    rows += [(f"{name} scenes", summary) for name, summary in entry["by_source"].items()]
    for name in BINS:
        rows += [(f"{name} {row['range'][0]:g}-{row['range'][1]:g}", row) for row in entry[name]]
    if "field_mean_invariant_baseline" in entry:
        rows.append(("(baseline: invariant, field-mean wavefront)", entry["field_mean_invariant_baseline"]))
    for label, row in rows:
        lines += [f"   * - {label}", f"     - {row['n']}", f"     - {row['median']:.3f}", f"     - {row['p95']:.3f}"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emulator", default="default", help="'default' or a directory saved by save_pretrained")
    parser.add_argument("--n", type=int, default=96, help="samples per held-out set (default 96)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512, 1024], help="image sizes for the timing")
    parser.add_argument("--output", default=str(RESULTS / "emulator_accuracy.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    reference = EmulatorForward.from_pretrained(args.emulator, OpticalSetup(sampling=3.0))
    card_ranges = reference.card["trained_ranges"]
    config = DegradationConfig(
        sampling=tuple(card_ranges["sampling"]),
        obscuration=tuple(card_ranges["obscuration"]),
        d_over_r0=tuple(card_ranges["d_over_r0"]),
        seed=HELD_OUT_SEED,
    )
    result = {
        "emulator": str(args.emulator),
        "emulator_sha256": reference.weights_sha256,
        "architecture": reference.card["architecture"],
        "metric": "RMS(emulator - PhysicalForward) / std(PhysicalForward), interior pixels (size // 8 border left out)",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": __import__("os").cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sunpy_momfbd": sunpy_momfbd.__version__,
        },
        "held_out": {
            "seed": HELD_OUT_SEED,
            "n": args.n,
            "size": config.size,
            "real_scene": "DKIST/VBI granulation (sunkit-image test data), 25 % of samples",
        },
        "accuracy": {},
    }
    tables = []
    for kind, variant in (("invariant", False), ("variant", True)):
        samples, sources = held_out_samples(config, args.n, variant=variant)
        measured = evaluate(reference, samples)
        sources = np.array(sources)
        entry = {
            "overall": error_summary(measured["error"]),
            "by_source": {s: error_summary(measured["error"][sources == s]) for s in ("procedural", "vbi")},
            **breakdown(measured),
        }
        if variant:
            entry["field_mean_invariant_baseline"] = error_summary(_mean_wavefront_errors(samples, config.n_modes))
        result["accuracy"][kind] = entry
        tables.append(_table(f"Spatially {kind} held-out set", entry))
    result["speed"] = speed(args.emulator, tuple(args.sizes))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(output, lambda path: path.write_text(text), overwrite=True)
    print("\n".join(tables))
    for row in result["speed"]:
        print(
            f"{row['size']}²: emulator {row['emulator_s']:.3f} s, PhysicalForward {row['physical_s']:.3f} s, ratio {row['ratio_physical_over_emulator']:.2f}"
        )
    if "field_mean_invariant_baseline" in result["accuracy"]["variant"]:
        b = result["accuracy"]["variant"]["field_mean_invariant_baseline"]
        print(f"field-mean invariant baseline on the variant set: median {b['median']:.3f}, p95 {b['p95']:.3f}")
    print(f"written {output}")


if __name__ == "__main__":
    main()
