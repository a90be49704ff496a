import json
from pathlib import Path

import numpy as np
import pytest
from helpers_io import assert_meta_equal, small_restoration
from ndcube import NDCollection, NDCube

import astropy.units as u
from astropy.io import fits

import sunpy.map

from sunpy_momfbd import __version__, load, save
from sunpy_momfbd.io import to_fits_hdulist

PIXELS = ([0, 12, 47, 30.5], [0, 40, 47, 2.25])


@pytest.fixture(scope="module")
def result():
    return small_restoration()[1]


def _assert_same_cube(a, b):
    np.testing.assert_array_equal(a.data, b.data)
    assert a.data.dtype == b.data.dtype
    assert a.unit == b.unit
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.wcs.low_level_wcs.to_header() == b.wcs.low_level_wcs.to_header()
    for x, y in zip(*PIXELS, strict=True):
        assert a.wcs.pixel_to_world(x, y).separation(b.wcs.pixel_to_world(x, y)) < 1e-9 * u.arcsec
    assert_meta_equal(a.meta, b.meta)


def test_asdf_round_trip(result, tmp_path):
    path = save(result, tmp_path / "result.asdf")
    assert path == tmp_path / "result.asdf"
    loaded = load(path)
    assert isinstance(loaded, NDCube)
    _assert_same_cube(result, loaded)
    assert type(loaded.data) is np.ndarray
    np.testing.assert_array_equal(loaded.meta["wavefront"]["modes"], result.meta["wavefront"]["modes"])
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left


def test_asdf_round_trip_collection(result, tmp_path):
    collection = NDCollection([("wb", result), ("nb", result)], aligned_axes="all", meta={"objects": ["wb", "nb"]})
    loaded = load(save(collection, tmp_path / "collection.asdf"))
    assert isinstance(loaded, NDCollection)
    assert sorted(loaded) == ["nb", "wb"]
    assert loaded.meta == {"objects": ["wb", "nb"]}
    for name in ("wb", "nb"):
        _assert_same_cube(result, loaded[name])


def test_never_clobber(result, tmp_path):
    path = tmp_path / "result.asdf"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save(result, path)
    assert path.read_text() == "precious"
    save(result, path, overwrite=True)
    _assert_same_cube(result, load(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.asdf"]


def test_failed_write_leaves_nothing(result, tmp_path, monkeypatch):
    import asdf

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(asdf.AsdfFile, "write_to", broken)
    with pytest.raises(OSError, match="disk full"):
        save(result, tmp_path / "result.asdf")
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_write_nothing(result, tmp_path):
    with pytest.raises(ValueError, match=r"ending in \.asdf"):
        save(result, tmp_path / "result.h5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save(result, tmp_path / "missing" / "result.asdf")
    with pytest.raises(TypeError, match="NDCube or NDCollection"):
        save(result.data, tmp_path / "result.asdf")
    assert list(tmp_path.iterdir()) == []


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nothing.asdf")
    with pytest.raises(ValueError, match=r"sunpy\.map\.Map"):
        load(tmp_path / "object.fits")
    (tmp_path / "junk.asdf").write_text("not asdf at all")
    with pytest.raises(ValueError, match="cannot read"):
        load(tmp_path / "junk.asdf")


def test_fits_export_read_by_sunpy(result, tmp_path):
    path = save(result, tmp_path / "object.fits")
    restored = sunpy.map.Map(path)
    np.testing.assert_array_equal(restored.data, result.data)
    assert restored.unit == u.ct
    assert restored.wavelength == 450.4 * u.nm
    assert restored.instrument == "VBI"
    assert restored.date.isot == result.meta["date-obs"]
    for x, y in zip(*PIXELS, strict=True):
        separation = restored.wcs.pixel_to_world(x, y).separation(result.wcs.pixel_to_world(x, y))
        assert separation < 1e-6 * u.arcsec
    header = fits.getheader(path)
    assert header["PRSTEP1"] == "MOMFBD"
    assert header["PRPROC1"] == "sunpy_momfbd.deconvolve"
    assert header["PRPVER1"] == __version__
    assert json.loads(header["PRPARA1"])["forward"] == "PhysicalForward"
    assert header["PRLIB1A"] == "torch"
    assert header["PRVER1A"]
    assert header["PRLIB1B"] == "sunpy"
    assert header["MOMBORD"] == result.meta["momfbd"]["mask"]["border"]


def test_fits_provenance_step_follows_existing_steps(result):
    cube = NDCube(result.data, wcs=result.wcs, unit=result.unit, meta={**result.meta, "prstep1": "DARK-SUBTRACTION"})
    header = to_fits_hdulist(cube)[0].header
    assert header["PRSTEP1"] == "DARK-SUBTRACTION"
    assert header["PRSTEP2"] == "MOMFBD"
    assert header["PRLIB2A"] == "torch"


def test_fits_collection_one_hdu_per_object(result, tmp_path):
    collection = NDCollection([("wb", result), ("nb", result)], aligned_axes="all")
    path = save(collection, tmp_path / "objects.fits")
    with fits.open(path) as hdul:
        assert [h.header.get("EXTNAME") for h in hdul] == ["wb", "nb"]
    maps = sunpy.map.Map(path)
    assert len(maps) == 2


# ---------------------------------------------------------------------- files that cannot lie


def _corrupt(raw, how):
    if how == "half":
        return raw[: len(raw) // 2]
    if how == "short by 200 bytes":
        return raw[:-200]
    flipped = bytearray(raw)
    flipped[raw.index(b"\xd3BLK") + 200] ^= 0x01  # one bit inside the first data block
    return bytes(flipped)


@pytest.mark.parametrize("how", ["half", "short by 200 bytes", "one bit flipped"])
def test_damaged_files_are_refused(result, tmp_path, how):
    path = save(result, tmp_path / "result.asdf")
    damaged = tmp_path / "damaged.asdf"
    damaged.write_bytes(_corrupt(path.read_bytes(), how))
    with pytest.raises(
        ValueError, match=rf"cannot read {damaged} as a sunpy-momfbd result \(truncated or corrupted\?\)"
    ):
        load(damaged)


def test_foreign_asdf_is_refused(result, tmp_path):
    import asdf

    foreign = tmp_path / "foreign.asdf"
    asdf.AsdfFile({"result": "a string", "sunpy_momfbd_version": __version__}).write_to(foreign)
    with pytest.raises(ValueError, match=rf"{foreign} holds a str where save writes an NDCube or NDCollection"):
        load(foreign)
    other = tmp_path / "other.asdf"
    asdf.AsdfFile({"result": result}).write_to(other)  # an NDCube, but not written by save
    with pytest.raises(ValueError, match=rf"{other} holds no sunpy-momfbd result"):
        load(other)
    with pytest.raises(IsADirectoryError, match="is a directory, not a result file"):
        load(tmp_path)


def test_stale_temporary_files_are_removed_live_ones_kept(result, tmp_path):
    import fcntl

    stale = tmp_path / ".result.asdf.killed01.part"  # a killed writer's leftover: nobody holds it
    stale.write_bytes(b"half a file")
    live = tmp_path / ".result.asdf.writing.part"  # another writer, still at work: it holds a lock
    live.write_bytes(b"being written")
    other = tmp_path / ".other.asdf.killed02.part"  # another target's: not ours to judge
    other.write_bytes(b"")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        save(result, tmp_path / "result.asdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "result.asdf"])


def test_writes_reach_the_disk_before_the_rename(result, tmp_path, monkeypatch):
    import os
    import stat

    events = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd):
        events.append(("fsync", "directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        real_fsync(fd)

    def link(*args, **kwargs):
        events.append(("link",))
        real_link(*args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    save(result, tmp_path / "result.asdf")
    # The file's data first, then the new name, then the directory entry.
    assert events == [("fsync", "file"), ("link",), ("fsync", "directory")]


def _dated(result, date):
    meta = {k: v for k, v in dict(result.meta).items() if k.lower() not in ("date-beg", "date-obs")}
    return NDCube(result.data, wcs=result.wcs, unit=result.unit, mask=result.mask, meta={**meta, "DATE-BEG": date})


def test_load_series_orders_a_campaign_by_time(result, tmp_path):
    from ndcube import NDCubeSequence

    from sunpy_momfbd import load_series

    # File names in the opposite order to the bursts' times.
    dates = {"a.asdf": "2023-06-01T08:02:00", "b.asdf": "2023-06-01T08:01:00", "c.asdf": "2023-06-01T08:00:00"}
    for name, date in dates.items():
        save(_dated(result, date), tmp_path / name)
    (tmp_path / ".d.asdf.x1.part").write_bytes(b"a killed write")  # ignored
    (tmp_path / "table.ecsv").write_text("not a result")  # ignored
    series = load_series(tmp_path)
    assert isinstance(series, NDCubeSequence)
    assert series.meta["dates"] == ["2023-06-01T08:00:00.000", "2023-06-01T08:01:00.000", "2023-06-01T08:02:00.000"]
    assert [Path(f).name for f in series.meta["files"]] == ["c.asdf", "b.asdf", "a.asdf"]
    np.testing.assert_array_equal(series[0].data, result.data)
    assert series.meta == load_series([tmp_path / "a.asdf", tmp_path / "c.asdf", tmp_path / "b.asdf"]).meta


def test_load_series_errors_name_the_file(result, tmp_path):
    from sunpy_momfbd import load_series

    with pytest.raises(FileNotFoundError, match=rf"no result files matching '\*\.asdf' in {tmp_path}"):
        load_series(tmp_path)
    undated = NDCube(result.data, wcs=result.wcs, meta={"telescop": "DKIST"})
    path = save(undated, tmp_path / "undated.asdf")
    with pytest.raises(ValueError, match=rf"{path} has no DATE-BEG or DATE-OBS"):
        load_series(tmp_path)
    both = NDCollection([("wb", result), ("nb", result)], aligned_axes="all")
    pair = save(both, tmp_path / "pair.asdf")
    with pytest.raises(ValueError, match=rf"{pair} holds the objects 'nb', 'wb': choose one with object_name="):
        load_series([pair])
    assert load_series([pair], object_name="nb").meta["files"] == [str(pair)]
