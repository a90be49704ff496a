"""
Speed and peak memory of the two forward models, `PhysicalForward` and `EmulatorForward`.

Usage::

    python benchmarks/forward.py [--quick] [--output benchmarks/results/forward.json]

For every image size (H = W) and mode grid (gy = gx) the script times one batch of frames through
``PhysicalForward`` (psf_size 48 at sampling 2) and an ``EmulatorForward`` with random weights
(width 24, depth 4; the accuracy of the weights does not matter for speed), both without gradients
("forward") and with a backward pass to the object and the mode maps ("forward+backward"), and
reports the ratio emulator time / physical time (above one: the physical model is faster).

Method
------
* Both models run in this one process on the same device (CUDA when present, else CPU), in
  float32, after one warm-up call per case; the reported time is the median of ``--repeats``
  calls, taken with the two models interleaved so that load from other processes hits both alike
  (``torch.cuda.synchronize()`` before every clock reading on a GPU).
* The emulator's cost does not depend on the mode grid (the network sees per-pixel coefficients
  whatever the grid), so it is timed once per image size, with a 16×16 grid (or the largest grid
  below it that the run uses), and that time is the numerator of the ratio at every grid of that size.
* Peak memory is measured on the warm-up call. On CUDA: ``torch.cuda.max_memory_allocated``
  minus the memory allocated before the call. On CPU (tracemalloc does not see torch's
  allocations): the growth of the process's resident-set high-water mark (``VmHWM`` in
  ``/proc/self/status``) over the resident set before the call, after returning freed heap memory
  to the system (``malloc_trim``) and resetting the high-water mark (``/proc/self/clear_refs``).
  It includes allocator overhead and is reported as null where the kernel offers no reset.
* Cases whose estimated time (extrapolated by area from the smaller size) would exceed the
  per-case budget are skipped and listed, with the estimate, under ``"skipped"``.
"""

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import sunpy_momfbd
from sunpy_momfbd.forward import EmulatorForward, PhysicalForward
from sunpy_momfbd.io.atomic import atomic_write
from sunpy_momfbd.optics import OpticalSetup

FULL = {"sizes": (128, 256, 512, 1024), "grids": (1, 4, 16, 64), "case_budget": 240.0}
QUICK = {"sizes": (128,), "grids": (1, 4, 16), "case_budget": 60.0}
SAMPLING, PSF_SIZE, N_MODES = 2.0, 48, 44


def main(argv=None):
    """Run the benchmark from the command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="a small subset (under two minutes on a laptop CPU)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "forward.json")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case (median); default 3")
    parser.add_argument("--frames", type=int, default=1, help="frames per batch; default 1")
    parser.add_argument("--device", default=None, help="torch device; default CUDA when present, else CPU")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)

    setup = OpticalSetup(sampling=SAMPLING, n_modes=N_MODES)
    physical = PhysicalForward(setup, psf_size=PSF_SIZE).to(device)
    emulator = EmulatorForward(setup, width=24, depth=4).to(device).eval()
    # One small call of each model first, so that one-off initialisation (FFT plans, thread pools,
    # lazily loaded kernels) is not counted in the first case's time or memory.
    for grid in (1, 2):
        for mode in ("forward", "forward+backward"):
            for model in (physical, emulator):
                _call(
                    model,
                    torch.rand(1, 64, 64, device=device),
                    torch.zeros(1, N_MODES, grid, grid, device=device),
                    mode,
                )
    results, skipped = [], []
    started = time.perf_counter()
    for size in config["sizes"]:
        emulator_grid = max(g for g in config["grids"] if g <= 16)
        emulator_times = {}
        for grid in config["grids"]:
            obj = torch.rand(args.frames, size, size, device=device)
            modes = 0.5 * torch.randn(args.frames, N_MODES, grid, grid, device=device)
            for mode in ("forward", "forward+backward"):
                models = {"physical": physical}
                if grid == emulator_grid:
                    estimate = _estimate(results, "emulator", mode, size, emulator.border)
                    if estimate is not None and estimate * (1 + args.repeats) > config["case_budget"]:
                        skipped.append(
                            {"model": "emulator", "size": size, "mode": mode, "estimated_s_per_call": estimate}
                        )
                        print(f"skip emulator {size}² {mode}: estimated {estimate:.0f} s per call", flush=True)
                    else:
                        models["emulator"] = emulator
                measured = _measure(models, obj, modes, mode, args.repeats, device)
                for name, (seconds, memory) in measured.items():
                    row = {"model": name, "size": size, "grid": grid, "mode": mode, "frames": args.frames}
                    row.update(seconds=seconds, median_s=statistics.median(seconds), peak_memory_bytes=memory)
                    results.append(row)
                    if name == "emulator":
                        emulator_times[mode] = row["median_s"]
                    print(
                        f"{name:9s} {size:5d}² grid {grid:2d}² {mode:17s} {row['median_s'] * 1e3:10.1f} ms  "
                        f"peak {_mib(memory)}",
                        flush=True,
                    )
        for row in results:
            if row["model"] == "physical" and row["size"] == size and row["mode"] in emulator_times:
                row["ratio_emulator_over_physical"] = emulator_times[row["mode"]] / row["median_s"]
    report = {
        "benchmark": "forward",
        "machine": _machine(device),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sunpy_momfbd": sunpy_momfbd.__version__,
        },
        "parameters": {
            "sampling": SAMPLING,
            "psf_size": PSF_SIZE,
            "n_modes": N_MODES,
            "dtype": "float32",
            "device": str(device),
            "frames": args.frames,
            "repeats": args.repeats,
            "quick": args.quick,
            "sizes": list(config["sizes"]),
            "grids": list(config["grids"]),
            "emulator": {"width": 24, "depth": 4, "border": emulator.border},
            "emulator_timed_with_grid": max(g for g in config["grids"] if g <= 16),
        },
        "method": __doc__.split("Method\n------\n")[1].strip(),
        "results": results,
        "skipped": skipped,
        "wall_time_s": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1) + "\n"
    atomic_write(args.output, lambda path: path.write_text(text), overwrite=True)
    _print_table(results)
    print(f"wrote {args.output} in {report['wall_time_s']:.0f} s")


def _measure(models, obj, modes, mode, repeats, device):
    """Warm-up (measuring peak memory), then interleaved timed calls; {name: (seconds, peak bytes)}."""
    memory = {name: _peak_memory(lambda m=model: _call(m, obj, modes, mode), device) for name, model in models.items()}
    seconds = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            _sync(device)
            start = time.perf_counter()
            _call(model, obj, modes, mode)
            _sync(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: (seconds[name], memory[name]) for name in models}


def _call(model, obj, modes, mode):
    if mode == "forward":
        with torch.no_grad():
            return model(obj, modes)
    obj = obj.clone().requires_grad_()
    modes = modes.clone().requires_grad_()
    model(obj, modes).square().sum().backward()
    return None


def _peak_memory(function, device):
    """Peak extra memory of one call, in bytes (see the module docstring), or None."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        function()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kib("VmRSS")
    except OSError:
        function()
        return None
    function()
    return 1024 * (_status_kib("VmHWM") - before)


def _status_kib(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _estimate(results, model, mode, size, border):
    """Seconds per call extrapolated by padded area from the largest size measured so far, or None."""
    previous = [r for r in results if r["model"] == model and r["mode"] == mode]
    if not previous:
        return None
    last = max(previous, key=lambda r: r["size"])
    return last["median_s"] * ((size + 2 * border) / (last["size"] + 2 * border)) ** 2


def _machine(device):
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "platform": platform.platform(),
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _mib(value):
    return "   n/a" if value is None else f"{value / 2**20:7.0f} MiB"


def _print_table(results):
    print(f"\n{'size':>6} {'grid':>5} {'mode':>17} {'physical':>12} {'emulator':>12} {'ratio':>7}")
    emulator = {(r["size"], r["mode"]): r["median_s"] for r in results if r["model"] == "emulator"}
    for r in results:
        if r["model"] != "physical":
            continue
        other = emulator.get((r["size"], r["mode"]))
        other_text = f"{other * 1e3:10.0f} ms" if other is not None else f"{'skipped':>13}"
        ratio = f"{other / r['median_s']:7.1f}" if other is not None else f"{'':>7}"
        print(f"{r['size']:5d}² {r['grid']:4d}² {r['mode']:>17} {r['median_s'] * 1e3:9.0f} ms {other_text} {ratio}")


if __name__ == "__main__":
    sys.exit(main())
