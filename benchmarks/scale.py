"""
Scaling benchmark: time and peak memory of a default restoration against the field's area.

Each field size gets its own burst of the real DKIST/VBI scene (mirror-tiled beyond its 300 pixels),
simulated like ``restore.py``'s full case (12 frames, D/r0 = 10, θ0 = 60 px, 15-mode AO, 2000
photo-electrons per pixel, true wavefronts on a grid about 32 pixels apart) and restored by
`sunpy_momfbd.solver.solve` with default settings (what ``deconvolve`` does) in its own Python
process, so that the peak resident set (``VmHWM``) is that restoration's own. The script reports
time, peak memory, the time per stage and per refinement iteration, and the exponents k of
time ∝ area^k and memory ∝ area^k fitted over the sizes run.

Large fields can be run with fewer refinement iterations (``--iterations``); the JSON records it,
and the time per iteration is the number that compares across sizes.

Usage::

    python benchmarks/scale.py [--sizes 256 512 1024 2048] [--iterations N] [--output FILE]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from restore import CASES, DKIST_DIAMETER_M, _peak_rss_mib, _warm_torch, machine_info, vbi_image

from sunpy_momfbd.forward import PhysicalForward
from sunpy_momfbd.io.atomic import atomic_write
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.simulate import simulate_burst
from sunpy_momfbd.solver import Burst, Channel, solve

#: The burst of every size: ``restore.py``'s full case (the truth fitted by 44 modes), true
#: wavefronts on a grid ``grid_spacing`` pixels apart.
SHARED = ("n_frames", "d_over_r0", "isoplanatic_patch", "ao_modes", "ao_residual", "photons", "seed")
BURST = {**{key: CASES["full"][key] for key in SHARED}, "grid_spacing": 32}


def make_burst(size, path):
    """Simulate a ``size``² burst of the mirror-tiled VBI scene and save it."""
    image, scale, wavelength, _ = vbi_image()
    sampling = (wavelength * 1e-9 / DKIST_DIAMETER_M) * 206264.806 / scale
    setup = OpticalSetup(sampling=sampling)
    margin = PhysicalForward(setup, seeing=BURST["d_over_r0"]).psf_size // 2
    extent = size + 2 * margin
    repeats = -(-extent // min(image.shape))
    scene = np.pad(image, [(0, (repeats - 1) * n) for n in image.shape], mode="symmetric")[:extent, :extent]
    start = time.perf_counter()
    burst = simulate_burst(
        scene,
        setup,
        BURST["n_frames"],
        BURST["d_over_r0"],
        BURST["isoplanatic_patch"],
        max(1, round(extent / BURST["grid_spacing"])),
        photons=BURST["photons"],
        ao_modes=BURST["ao_modes"],
        ao_residual=BURST["ao_residual"],
        margin=margin,
        rng=BURST["seed"],
    )
    np.save(path, burst.frames.astype(np.float32))
    return {"sampling": sampling, "simulation_seconds": time.perf_counter() - start}


def worker(path, sampling, iterations):
    """Restore one burst with default settings; print its time, memory and stages as JSON."""
    frames = np.load(path)
    setup = OpticalSetup(sampling=sampling)
    options = {} if iterations is None else {"n_iterations": iterations}
    _warm_torch()
    start = time.perf_counter()
    solution = solve(Burst([Channel(frames, setup)]), progress=False, **options)
    seconds = time.perf_counter() - start
    report = {
        "seconds": seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "timing": solution.timing,
        "iterations": solution.iterations,
        "seconds_per_iteration": solution.timing["refinement"] / max(solution.iterations, 1),
        "converged": solution.converged,
        "mode_grid": list(solution.settings["mode_grid"]),
        "padding": solution.padding,
    }
    print(json.dumps(report))


def exponent(areas, values):
    """Least-squares slope of log(value) against log(area)."""
    return float(np.polyfit(np.log(areas), np.log(values), 1)[0]) if len(areas) > 1 else None


def main(argv=None):
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048], help="field sides in pixels")
    parser.add_argument("--iterations", type=int, default=None, help="refinement iteration cap (default: the solver's)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "scale.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sampling", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.sampling, args.iterations)
        return

    record = {"benchmark": "scale", "machine": machine_info(), "burst": BURST, "command": " ".join(sys.argv)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="momfbd-scale-") as workdir:
        for size in args.sizes:
            path = Path(workdir) / f"burst{size}.npy"
            made = make_burst(size, path)
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(path)]
            command += ["--sampling", str(made["sampling"])]
            command += [] if args.iterations is None else ["--iterations", str(args.iterations)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                rows.append({"size": size, "failed": done.stderr[-2000:]})
                print(f"{size}²: FAILED (exit {done.returncode})\n{done.stderr[-2000:]}", flush=True)
                continue
            row = {"size": size, **made, **json.loads(done.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(
                f"{size}²: {row['seconds']:.1f} s ({row['iterations']} iterations, "
                f"{row['seconds_per_iteration']:.2f} s each), peak {row['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    done = [r for r in rows if "seconds" in r]
    areas = [r["size"] ** 2 for r in done]
    record["results"] = rows
    record["iterations_cap"] = args.iterations
    record["exponents"] = {
        "time": exponent(areas, [r["seconds"] for r in done]),
        "time_per_iteration": exponent(areas, [r["seconds_per_iteration"] for r in done]),
        "initialisation": exponent(areas, [r["timing"]["initialisation"] for r in done]),
        "peak_rss": exponent(areas, [r["peak_rss_mib"] for r in done]),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(args.output, lambda path: path.write_text(text), overwrite=True)
    print(f"exponents of area: {record['exponents']}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
