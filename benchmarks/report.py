"""
Run every benchmark and tabulate its results, with the machine, date and commit of each run.

::

    python benchmarks/report.py                   # run every benchmark (hours on 2 CPU cores), then the tables
    python benchmarks/report.py --quick           # the quick versions (about 15 minutes), into benchmarks/results/quick/
    python benchmarks/report.py --from-results    # only the tables, from the JSON files already there

The tables are written as reStructuredText (``--format rst``, the default, included by the
user guide's benchmark page) or Markdown (``--format md``) to ``--output``
(default: ``docs/guide/benchmark_tables.inc`` for the committed results, standard output
otherwise). The date and commit of a run are those of the commit that recorded its JSON file
(benchmarks are committed with, or right after, the code they measure); for a file not yet
committed, its modification date and the commit it ran on top of.
"""

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS_TABLES = HERE.parent / "docs" / "guide" / "benchmark_tables.inc"

#: Every benchmark run: (script, arguments, JSON file name); ``{out}`` is the results directory.
FULL_RUNS = [
    ("forward.py", ["--output", "{out}/forward.json"]),
    ("restore.py", ["--case", "full", "--output", "{out}/restore.json"]),
    ("restore.py", ["--case", "quick", "--output", "{out}/restore_quick.json"]),
    *[
        ("restore.py", ["--case", case, "--output", f"{{out}}/restore_{case}.json"])
        for case in ("strong", "isoplanatic", "diversity", "two_objects")
    ],
    ("scale.py", ["--sizes", "256", "512", "1024", "2048", "--output", "{out}/scale.json"]),
    ("emulator_accuracy.py", ["--output", "{out}/emulator_accuracy.json"]),
]
QUICK_RUNS = [
    ("forward.py", ["--quick", "--output", "{out}/forward.json"]),
    ("restore.py", ["--case", "quick", "--output", "{out}/restore_quick.json"]),
    ("scale.py", ["--sizes", "128", "256", "--iterations", "3", "--output", "{out}/scale.json"]),
    ("emulator_accuracy.py", ["--n", "16", "--sizes", "128", "--output", "{out}/emulator_accuracy.json"]),
]

#: Restoration methods in table order, with their column titles.
METHODS = {
    "momfbd": "sunpy-momfbd",
    "momfbd_seeing": "told the seeing",
    "torchmfbd": "torchmfbd",
    "oracle": "oracle",
    "oracle_fitted_modes": "oracle in the 44 fitted modes",
    "mean": "burst mean",
}


def run_benchmarks(runs, out):
    """Run each benchmark script in its own process; stop at the first failure."""
    out.mkdir(parents=True, exist_ok=True)
    for script, arguments in runs:
        command = [sys.executable, str(HERE / script), *(a.format(out=out) for a in arguments)]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True)


def _git(*arguments):
    result = subprocess.run(["git", *arguments], cwd=HERE, capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def date_and_commit(path):
    """
    Return the date and commit of a results file.

    A committed file: its commit date and the commit that recorded it (benchmarks are committed
    with, or right after, the code they measured). A new or changed file: its modification date
    and the commit it was run on top of.
    """
    if not _git("status", "--porcelain", "--", str(path)):
        logged = _git("log", "-1", "--format=%cs %h", "--", str(path)).split()
        if logged:
            return logged[0], logged[1]
    modified = datetime.datetime.fromtimestamp(path.stat().st_mtime, tz=datetime.UTC).date().isoformat()
    return modified, f"{_git('rev-parse', '--short', 'HEAD') or '?'} + working tree"


def machine_text(record):
    """Describe the machine of a run in a few words."""
    machine = record.get("machine") or {}
    cores = machine.get("cpu_count") or machine.get("cores")
    gpu = machine.get("gpu") or ("CUDA" if machine.get("cuda") else None)
    torch = machine.get("torch") or (record.get("versions") or {}).get("torch")
    parts = [
        machine.get("cpu", "?"),
        f"{cores} cores" if cores else None,
        gpu or "no GPU",
        f"torch {torch}" if torch else None,
    ]
    return ", ".join(p for p in parts if p)


def load_results(directory):
    """Read every JSON file of a results directory, by file stem."""
    return {path.stem: (path, json.loads(path.read_text())) for path in sorted(directory.glob("*.json"))}


def _best_error(entry, prefix=""):
    scored = [
        entry[key]["error"] for key in (f"{prefix}quality", f"{prefix}quality_diffraction_blurred") if key in entry
    ]
    return min(scored) if scored else None


def runs_table(results):
    """One row per results file: what ran, where, when and on which commit."""
    rows = []
    for stem, (path, record) in results.items():
        # Commands recorded with absolute paths are shown relative to the repository.
        command = (record.get("command") or f"{record.get('benchmark', stem)}.py").replace(f"{HERE.parent}/", "")
        rows.append([f"``{path.name}``", f"``{command}``", machine_text(record), *date_and_commit(path)])
    return ["file", "command", "machine", "date", "commit"], rows


def restore_table(results):
    """Best-product error (and time) of every restoration method in every case."""
    rows = []
    for path, record in (value for key, value in results.items() if key.startswith("restore")):
        for name, case in record["cases"].items():
            setup = case["case"]
            row = [f"{name} (``{path.name}``)", f"{setup['field']}² x {setup['n_frames']}", f"{setup['d_over_r0']:g}"]
            for method in METHODS:
                entry = case["results"].get(method)
                error = _best_error(entry) if entry else None
                timed = method.startswith(("momfbd", "torchmfbd"))
                row.append("—" if error is None else f"{error:.3f}" + (f" ({entry['seconds']:.0f} s)" if timed else ""))
            rows.append(row)
    return ["case", "field x frames", "D/r0", *METHODS.values()], rows


def forward_table(results):
    """Median time of each forward-model case and the ratio emulator / physical."""
    if "forward" not in results:
        return None
    by_case = {}
    for entry in results["forward"][1]["results"]:
        by_case.setdefault((entry["size"], entry["grid"], entry["mode"]), {})[entry["model"]] = entry["median_s"]
    rows = []
    for (size, grid, mode), times in by_case.items():
        physical, emulator = times.get("physical"), times.get("emulator")
        ratio = f"{emulator / physical:.2f}" if physical and emulator else "—"
        rows.append([f"{size}²", f"{grid}²", mode, _ms(physical), _ms(emulator), ratio])
    return ["field", "grid", "pass", "physical (ms)", "emulator (ms)", "emulator / physical"], rows


def _ms(seconds):
    return "—" if seconds is None else f"{1e3 * seconds:.0f}"


def scale_table(results):
    """Time and memory of a default restoration against the field size."""
    rows = [
        [
            f"{entry['size']}²",
            "x".join(map(str, entry["mode_grid"])),
            f"{entry['timing']['initialisation']:.0f}",
            f"{entry['seconds_per_iteration']:.2f}",
            str(entry["iterations"]),
            f"{entry['seconds']:.0f}",
            f"{entry['peak_rss_mib']:.0f}",
        ]
        for key, (_, record) in results.items()
        if key.startswith("scale")
        for entry in record["results"]
    ]
    header = [
        "field",
        "mode grid",
        "initialisation (s)",
        "s per iteration",
        "iterations",
        "total (s)",
        "peak RSS (MiB)",
    ]
    return header, sorted(rows, key=lambda row: int(row[0][:-1]))


def emulator_table(results):
    """Held-out accuracy of the emulator against PhysicalForward."""
    if "emulator_accuracy" not in results:
        return None
    accuracy = results["emulator_accuracy"][1]["accuracy"]
    rows = [
        [name, str(values["overall"]["n"]), f"{values['overall']['median']:.3f}", f"{values['overall']['p95']:.3f}"]
        for name, values in accuracy.items()
    ]
    return ["held-out set", "n", "median error", "95th percentile"], rows


def render(title, table, fmt):
    """Render one table as an rst list-table or a Markdown table, under a title."""
    header, rows = table
    if fmt == "md":
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row).replace("``", "`") + " |" for row in rows]
        return "\n".join(lines) + "\n"
    lines = [title, "-" * len(title), "", ".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines += [f"   * - {row[0]}", *(f"     - {cell}" for cell in row[1:])]
    return "\n".join(lines) + "\n"


def report(directory, fmt):
    """All tables of a results directory as one document."""
    results = load_results(directory)
    if not results:
        msg = f"no benchmark results (*.json) in {directory}"
        raise FileNotFoundError(msg)
    tables = [
        ("Runs", runs_table(results)),
        ("Restoration: error against the truth (time)", restore_table(results)),
        ("Forward models: median time of one frame", forward_table(results)),
        ("Scaling with the field size", scale_table(results)),
        ("Emulator accuracy against PhysicalForward", emulator_table(results)),
    ]
    note = (
        ".. This file is generated by ``python benchmarks/report.py --from-results``: do not edit it.\n\n"
        if fmt == "rst"
        else "<!-- Generated by python benchmarks/report.py --from-results: do not edit. -->\n\n"
    )
    return note + "\n".join(render(title, table, fmt) for title, table in tables if table and table[1])


def main(argv=None):
    """Run the benchmarks (unless ``--from-results``) and write the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="run the quick versions of the benchmarks")
    mode.add_argument("--from-results", action="store_true", help="run nothing: tabulate the existing results")
    parser.add_argument("--results", type=Path, help="results directory (default benchmarks/results[/quick])")
    parser.add_argument("--format", choices=["rst", "md"], default="rst", help="table format (default rst)")
    parser.add_argument("--output", help="file for the tables ('-': standard output); see the module docstring")
    args = parser.parse_args(argv)
    directory = args.results or (RESULTS / "quick" if args.quick else RESULTS)
    if not args.from_results:
        run_benchmarks(QUICK_RUNS if args.quick else FULL_RUNS, directory)
    text = report(directory, args.format)
    output = args.output or (str(DOCS_TABLES) if directory == RESULTS and args.format == "rst" else "-")
    if output == "-":
        sys.stdout.write(text)
    else:
        temporary = Path(f"{output}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(output)  # atomic: the docs never include a half-written file
        print(f"wrote {output}")


if __name__ == "__main__":
    main()
