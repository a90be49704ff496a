import numpy as np
import pytest
from ndcube import NDCollection, NDCube

import astropy.units as u
from astropy.io import fits

from sunpy_momfbd import cli, load
from sunpy_momfbd.data import sample_burst

FAST = ["--iterations", "1", "--option", "init_iterations=0", "--quiet"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Three tiny VBI frames written as SOLARNET files (WAVEUNIT = -9, no observer keys)."""
    directory = tmp_path_factory.mktemp("frames")
    files = []
    for index, m in enumerate(sample_burst(n_frames=3, size=48)):
        header = fits.Header(m.fits_header)
        header["WAVEUNIT"] = -9
        for key in ("HGLN_OBS", "HGLT_OBS", "DSUN_OBS"):
            header.remove(key, ignore_missing=True)
        path = directory / f"vbi_{index}.fits"
        fits.writeto(path, m.data, header)
        files.append(str(path))
    return files


def test_deconvolve_files_end_to_end(frames, tmp_path, capsys):
    output = tmp_path / "out.asdf"
    quicklook = tmp_path / "quick.png"
    assert cli.main(["deconvolve", *frames, "-o", str(output), "--quicklook", str(quicklook), *FAST]) == 0
    out = capsys.readouterr().out
    assert f"wrote {output}" in out
    assert "PhysicalForward" in out
    result = load(output)
    assert isinstance(result, NDCube)
    assert result.data.shape == (48, 48)
    assert result.meta["wavelnth"] == 450.4
    assert result.meta["momfbd"]["input"]["files"] == frames
    assert any("observer" in note for note in result.meta["momfbd"]["notes"])
    assert quicklook.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deconvolve_to_fits(frames, tmp_path):
    import sunpy.map

    output = tmp_path / "out.fits"
    assert cli.main(["deconvolve", *frames, "-o", str(output), *FAST]) == 0
    restored = sunpy.map.Map(output)
    assert restored.wavelength == 450.4 * u.nm
    assert restored.meta["prstep1"] == "MOMFBD"


def test_object_patterns(frames, tmp_path, capsys):
    stem = frames[0][:-6]
    output = tmp_path / "two.asdf"
    args = ["deconvolve", *frames, "--object", "a=*", "--object", "b=*vbi_0*", "-o", str(output), *FAST]
    assert cli.main(args) == 2
    assert "matches the patterns of both 'a' and 'b'" in capsys.readouterr().err
    args = ["deconvolve", "--object", f"wb={stem}[01].fits", "--object", f"nb={stem}2.fits", "-o", str(output), *FAST]
    assert cli.main(args) == 2  # 2 frames for wb, 1 for nb
    assert "same number of frames" in capsys.readouterr().err
    assert not output.exists()


def test_deconvolve_two_objects(frames, tmp_path):
    output = tmp_path / "two.asdf"
    wb = [frames[0], frames[1]]
    nb = [frames[1], frames[2]]
    groups = {"wb": wb, "nb": nb}
    from sunpy_momfbd import deconvolve, save

    result = deconvolve(groups, n_iterations=1, init_iterations=0, progress=False)
    save(result, output)
    loaded = load(output)
    assert isinstance(loaded, NDCollection)
    assert sorted(loaded) == ["nb", "wb"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--telescope", "Mystery"], "unknown telescope 'Mystery'; known telescopes: SST"),
        (["--wavelength", "5 s"], "--wavelength: '5 s' is not a length"),
        (["--mode-grid", "two"], "--mode-grid must be auto, N or GYxGX"),
        (["--option", "n_iteration=3"], "unknown solver option(s) n_iteration"),
        (["--diversity", "pd=wb:1.0"], "--diversity needs the channels named with --object"),
        (["--obscuration", "0.4m"], "--obscuration needs --diameter"),
    ],
)
def test_user_errors_are_one_line_and_write_nothing(frames, tmp_path, capsys, extra, message):
    output = tmp_path / "out.asdf"
    assert cli.main(["deconvolve", *frames, "-o", str(output), *FAST, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sunpy-momfbd deconvolve: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_bad_files_and_existing_output(frames, tmp_path, capsys):
    output = tmp_path / "out.asdf"
    assert cli.main(["deconvolve", str(tmp_path / "missing.fits"), "-o", str(output), *FAST]) == 2
    assert "does not exist" in capsys.readouterr().err
    output.write_text("keep me")
    assert cli.main(["deconvolve", *frames, "-o", str(output), *FAST]) == 2
    assert "already exists; pass overwrite=True (CLI: --overwrite)" in capsys.readouterr().err
    assert output.read_text() == "keep me"
    with pytest.raises(FileExistsError):
        cli.main(["deconvolve", *frames, "-o", str(output), "--debug", *FAST])


def test_custom_telescope(frames, tmp_path):
    output = tmp_path / "custom.asdf"
    args = ["deconvolve", *frames, "-o", str(output), "--diameter", "4m", "--obscuration", "0.5m", *FAST]
    assert cli.main(args) == 0
    telescope = load(output).meta["momfbd"]["channels"]["object"]["telescope"]
    assert telescope["obscuration"] == 0.5 * u.m


def test_demo(tmp_path, capsys):
    args = ["demo", "-o", str(tmp_path / "demo"), "--frames", "3", "--size", "48", *FAST]
    assert cli.main(args) == 0
    asdf_path, png_path = tmp_path / "demo" / "momfbd_demo.asdf", tmp_path / "demo" / "momfbd_demo.png"
    assert isinstance(load(asdf_path), NDCube)
    assert png_path.read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {png_path}" in capsys.readouterr().out
    assert cli.main(args) == 2  # never clobbers without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite"]) == 0
    np.testing.assert_array_equal(load(asdf_path).mask[0], True)
