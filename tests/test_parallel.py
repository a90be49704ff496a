"""
Tests of `sunpy_momfbd.parallel.deconvolve_many`: a campaign of tiny bursts, on a dask cluster and
in this process.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers_io import make_maps

from astropy.table import Table

from sunpy_momfbd import deconvolve, load
from sunpy_momfbd import parallel as parallel_module
from sunpy_momfbd.parallel import STATUSES, deconvolve_many
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

#: Quick settings (plumbing, not restoration quality); the same for the tasks and the references.
OPTIONS = {"n_iterations": 2, "init_iterations": 1, "mode_grid": 2, "n_modes": 14}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread here: on 2 busy shared cores, OpenMP's spinning threads slow tiny solves down many times."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_fits(directory, maps):
    directory.mkdir()
    paths = []
    for index, m in enumerate(maps):
        paths.append(str(directory / f"frame{index}.fits"))
        m.save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Two good scans (FITS files; in-memory Maps) and a bad one (frames of different shapes)."""
    root = tmp_path_factory.mktemp("campaign")
    good_files = _write_fits(root / "scan-a", make_maps(seed=1))
    good_maps = make_maps(seed=2)
    bad = make_maps(2, seed=3) + make_maps(1, shape=(40, 48), seed=4)
    bad_files = _write_fits(root / "bad", bad)
    return {"scan-a": good_files, "scan-b": good_maps, "bad": bad_files}


@pytest.fixture(scope="module")
def references(campaign):
    """In-process restorations of the good scans with the same settings."""
    return {name: deconvolve(campaign[name], progress=False, **OPTIONS) for name in ("scan-a", "scan-b")}


@pytest.fixture
def client():
    distributed = pytest.importorskip("distributed")
    # A free port: the scheduler's HTTP server binds one even without a dashboard (8787 by default,
    # which parallel test workers would race for).
    cluster = distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _assert_matches(path, reference):
    restored = load(path)
    np.testing.assert_allclose(restored.data, reference.data, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(restored.mask, reference.mask)
    np.testing.assert_allclose(
        restored.meta["wavefront"]["modes"], reference.meta["wavefront"]["modes"], rtol=1e-4, atol=1e-5
    )
    assert restored.meta["momfbd"]["iterations"] == reference.meta["momfbd"]["iterations"]


def _rows(table):
    return {row["name"]: row for row in table}


def _check_campaign(table, output, references, *, worker):
    assert isinstance(table, Table)
    assert list(table["name"]) == ["scan-a", "scan-b", "bad"]
    assert list(table["status"]) == ["done", "done", "failed"]
    assert set(table["status"]) <= set(STATUSES)
    rows = _rows(table)
    for name, reference in references.items():
        row = rows[name]
        assert row["path"] == str(output / f"{name}.asdf")
        _assert_matches(row["path"], reference)
        assert row["iterations"] == reference.meta["momfbd"]["iterations"]
        assert row["converged"] == reference.meta["momfbd"]["converged"]
        assert row["d_over_r0"] == pytest.approx(np.median(reference.meta["momfbd"]["d_over_r0"]), rel=1e-4)
        assert row["seconds"] > 0
        assert row["error"] == ""
        assert row["worker"].startswith(worker) if worker else row["worker"] == ""
    bad = rows["bad"]
    assert "ValueError" in bad["error"]
    assert "shape" in bad["error"]
    assert np.ma.is_masked(bad["iterations"])
    assert not (output / "bad.asdf").exists()
    assert sorted(p.name for p in output.iterdir()) == ["scan-a.asdf", "scan-b.asdf"]  # no stray temporaries
    assert table.meta["output_dir"] == str(output)


def test_sequential_campaign(campaign, references, tmp_path):
    output = tmp_path / "restored" / "campaign"  # created, parents included
    with pytest.warns(SunpyMomfbdUserWarning, match=r"1 of 3 scans failed.*'bad'.*ValueError"):
        table = deconvolve_many(campaign, output, progress=False, **OPTIONS)
    _check_campaign(table, output, references, worker="")


def test_campaign_on_a_cluster(campaign, references, tmp_path, client, capsys):
    output = tmp_path / "restored"
    with pytest.warns(SunpyMomfbdUserWarning, match=r"1 of 3 scans failed.*'bad'"):
        table = deconvolve_many(campaign, output, client=client, torch_threads=1, **OPTIONS)
    _check_campaign(table, output, references, worker="inproc://")
    assert list(table["threads"][:2]) == [1, 1]
    assert "restoring 3 scans" in capsys.readouterr().err  # the progress bar
    # The table is what people keep: it survives a round trip through CSV.
    table.write(tmp_path / "campaign.csv")
    assert list(Table.read(tmp_path / "campaign.csv")["status"]) == ["done", "done", "failed"]

    # Resuming skips what is written (files untouched) and retries the failed scan only.
    good = {name: campaign[name] for name in ("scan-a", "scan-b")}
    stamps = {p.name: p.stat().st_mtime_ns for p in output.iterdir()}
    again = deconvolve_many(good, output, client=client, progress=False, **OPTIONS)
    assert list(again["status"]) == ["skipped", "skipped"]
    assert np.ma.is_masked(again["seconds"][0])
    assert {p.name: p.stat().st_mtime_ns for p in output.iterdir()} == stamps

    # overwrite=True redoes a scan; the active client is used when none is passed.
    redo = deconvolve_many({"scan-a": campaign["scan-a"]}, output, overwrite=True, progress=False, **OPTIONS)
    assert list(redo["status"]) == ["done"]
    assert redo["worker"][0].startswith("inproc://")
    assert (output / "scan-a.asdf").stat().st_mtime_ns != stamps["scan-a.asdf"]
    _assert_matches(output / "scan-a.asdf", references["scan-a"])


def test_torch_threads_set_in_the_task_and_restored(campaign, tmp_path, monkeypatch):
    import torch

    seen = {}

    def fake_deconvolve(data, **options):
        seen["threads"] = torch.get_num_threads()
        seen["progress"] = options["progress"]
        raise RuntimeError("stop here")

    before = torch.get_num_threads()
    monkeypatch.setattr(parallel_module.api, "deconvolve", fake_deconvolve)
    with pytest.warns(SunpyMomfbdUserWarning, match="RuntimeError: stop here"):
        table = deconvolve_many({"x": campaign["scan-a"]}, tmp_path, torch_threads=1, progress=False)
    assert seen == {"threads": 1, "progress": False}
    assert table["threads"][0] == 1
    assert table["error"][0] == "RuntimeError: stop here"
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("scans", "options", "error", "match"),
    [
        ({"a/b": []}, {}, ValueError, r"scan name 'a/b' cannot be a file name: it contains a path separator"),
        ({"..": []}, {}, ValueError, "it is a directory name"),
        ({"": []}, {}, ValueError, "it is empty"),
        ({" a": []}, {}, ValueError, "blanks"),
        ({"a\tb": []}, {}, ValueError, "control characters"),
        ({"x" * 236: []}, {}, ValueError, "longer than 235 bytes"),
        ({1: []}, {}, TypeError, "scan names must be strings"),
        ({"Scan": [], "scan": []}, {}, ValueError, "differ only in case"),
        ({}, {}, ValueError, "no scans"),
        ([["f.fits"]], {}, TypeError, "scans must be a dict"),
        ({"a": ["missing.fits"]}, {}, FileNotFoundError, r"scan 'a': input file .*missing.fits does not exist"),
        ({"a": "scan/*.fits"}, {}, TypeError, r"scan 'a': give a list of files .* single path scan/\*.fits"),
        ({"a": {"wb": "wb/*.fits"}}, {}, TypeError, "single path wb/"),
        ({"a": []}, {"n_iteration": 3}, TypeError, r"unknown option\(s\) n_iteration.*valid:.*init_iterations"),
        ({"a": []}, {"data": []}, TypeError, "data is given per scan"),
        ({"a": []}, {"mode_grid": 0}, ValueError, "mode_grid"),
        ({"a": []}, {"forward": "fast"}, ValueError, "forward must be one of"),
        ({"a": []}, {"telescope": "Mystery"}, ValueError, "unknown telescope 'Mystery'"),
        ({"a": []}, {"torch_threads": 0}, ValueError, "torch_threads must be a positive integer"),
        ({"a": []}, {"client": "tcp://localhost:8786"}, TypeError, "client must be a distributed.Client"),
    ],
)
def test_errors_before_anything_runs(tmp_path, monkeypatch, scans, options, error, match):
    def fail(*args, **kwargs):
        raise AssertionError("no scan may run")

    monkeypatch.setattr(parallel_module, "_deconvolve_scan", fail)
    output = tmp_path / "out"
    with pytest.raises(error, match=match):
        deconvolve_many(scans, output, progress=False, **options)
    assert not output.exists()


def test_output_dir_must_be_writable(campaign, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        deconvolve_many({"a": campaign["scan-a"]}, afile, progress=False)
    with pytest.raises(OSError, match=r"cannot write to output_dir .*afile/sub"):
        deconvolve_many({"a": campaign["scan-a"]}, afile / "sub", progress=False)
    assert afile.read_text() == ""


def test_no_dask_needed_without_a_client(campaign, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask were not installed
    (tmp_path / "a.asdf").write_text("an earlier result")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = deconvolve_many({"a": campaign["scan-a"]}, tmp_path, progress=False)
    assert list(table["status"]) == ["skipped"]
    assert (tmp_path / "a.asdf").read_text() == "an earlier result"
    with pytest.raises(ImportError, match=r'pip install "sunpy-momfbd\[dask\]"'):
        deconvolve_many({"a": campaign["scan-a"]}, tmp_path, client=object(), progress=False)


# --------------------------------------------------------------------------------------- command line

CLI_FAST = ["--iterations", "1", "--mode-grid", "2", "--option", "init_iterations=1", "--quiet"]


def test_cli_campaign(campaign, tmp_path, capsys):
    from sunpy_momfbd import cli

    directories = [str(Path(campaign[name][0]).parent) for name in ("scan-a", "bad")]
    output, table = tmp_path / "out", tmp_path / "tables" / "campaign.ecsv"
    with pytest.warns(SunpyMomfbdUserWarning, match="'bad'"):
        status = cli.main(["campaign", *directories, "-o", str(output), "--table", str(table), *CLI_FAST])
    assert status == 1  # a scan failed: batch scripts must notice
    out = capsys.readouterr().out
    assert "1 restored, 0 skipped (already written), 1 failed" in out
    assert "failed bad: ValueError" in out
    assert load(output / "scan-a.asdf").meta["momfbd"]["settings"]["n_iterations"] == 1
    written = Table.read(table)
    assert list(written["name"]) == ["scan-a", "bad"]
    assert list(written["status"]) == ["done", "failed"]

    # Resuming, with --workers: a local cluster of single-threaded workers, torch gets the cores.
    distributed = pytest.importorskip("distributed")
    clusters = []
    real_cluster = distributed.LocalCluster

    def local_cluster(**kwargs):
        clusters.append(kwargs)
        return real_cluster(processes=False, dashboard_address=":0", **kwargs)  # quick, on a free port

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distributed, "LocalCluster", local_cluster)
        assert cli.main(["campaign", directories[0], "-o", str(output), "--workers", "2", *CLI_FAST]) == 0
    assert clusters == [{"n_workers": 2, "threads_per_worker": 1}]
    assert "0 restored, 1 skipped (already written), 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--table", "t.txt"], "--table must end in .ecsv or .csv"),
        (["--option", "n_iteration=3"], "unknown solver option"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--pattern", "*.nothing"], "no files match"),
    ],
)
def test_cli_campaign_errors(campaign, tmp_path, capsys, extra, message):
    from sunpy_momfbd import cli

    directory = str(Path(campaign["scan-a"][0]).parent)
    assert cli.main(["campaign", directory, "-o", str(tmp_path / "out"), *extra, *CLI_FAST]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_campaign_scan_directories(tmp_path, capsys):
    from sunpy_momfbd import cli

    for parent in ("a", "b"):
        (tmp_path / parent / "scan1").mkdir(parents=True)
        (tmp_path / parent / "scan1" / "frame.fits").write_text("")
    args = [str(tmp_path / "a" / "scan1"), str(tmp_path / "b" / "scan1"), "-o", str(tmp_path / "out")]
    assert cli.main(["campaign", *args]) == 2
    assert "two scan directories are named 'scan1'" in capsys.readouterr().err
    assert cli.main(["campaign", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
    assert "is not a directory" in capsys.readouterr().err
