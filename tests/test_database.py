"""
Tests of the training-set builders: image sources, degradation, zarr stores and datasets.
"""

import numpy as np
import pytest
import torch

import sunpy_momfbd.database.degrade as degrade_module
from sunpy_momfbd.cli import main
from sunpy_momfbd.database import (
    DegradationConfig,
    OnTheFlyDataset,
    StoreDataset,
    apodise,
    array_patches,
    build_samples,
    build_validation,
    cellular_pattern,
    collate_samples,
    draw_sample,
    edges_and_lines,
    open_store,
    point_sources,
    power_law_field,
    procedural_patch,
    read_image,
    reshape_images,
)
from sunpy_momfbd.forward import PhysicalForward
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

pytest.importorskip("zarr")

#: A tiny configuration: 32² patches, 6 modes, mild seeing, small mode grids.
TINY = DegradationConfig(
    size=32, n_modes=6, d_over_r0=(2.0, 6.0), isoplanatic_patch=(16.0, 64.0), mode_grid=(2, 3), samples_per_setup=2
)


def _setup_of(conditioning, n_modes):
    return OpticalSetup(sampling=float(conditioning[0]), obscuration=float(conditioning[1]), n_modes=n_modes)


def _exact(image, modes, conditioning, n_modes):
    model = PhysicalForward(_setup_of(conditioning, n_modes))
    with torch.no_grad():
        return model(
            torch.as_tensor(image, dtype=torch.float64)[None], torch.as_tensor(modes, dtype=torch.float64)[None]
        )[0].numpy()


# ----------------------------------------------------------------------------------- sources


def test_power_law_field_has_the_requested_slope(rng):
    size = 128
    slopes = []
    for slope in (2.0, 3.5):
        power = np.zeros(size // 2)
        counts = np.zeros(size // 2)
        for _ in range(4):
            field = np.log(power_law_field(size, slope, contrast=0.1, rng=rng))
            spectrum = np.abs(np.fft.fft2(field)) ** 2
            k = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")) * size
            index = k.astype(int)
            inside = (index > 0) & (index < size // 2)
            np.add.at(power, index[inside], spectrum[inside])
            np.add.at(counts, index[inside], 1)
        k_bins = np.arange(4, 40)
        fit = np.polyfit(np.log(k_bins), np.log(power[k_bins] / counts[k_bins]), 1)[0]
        slopes.append(-fit)
    np.testing.assert_allclose(slopes, [2.0, 3.5], atol=0.25)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: power_law_field(48, 3.0, rng=rng),
        lambda rng: cellular_pattern(48, 8.0, rng=rng),
        lambda rng: point_sources(48, 5, rng=rng),
        lambda rng: edges_and_lines(48, rng=rng),
        lambda rng: procedural_patch(48, rng=rng),
    ],
)
def test_procedural_scenes_are_positive_with_unit_mean(make, rng):
    image = make(rng)
    assert image.shape == (48, 48)
    assert np.all(image > 0)
    assert np.mean(image) == pytest.approx(1.0, rel=1e-5)
    assert np.std(image) > 0.01  # not flat


def test_cellular_pattern_has_dark_lanes(rng):
    image = cellular_pattern(96, 12.0, rng=rng)
    # Granulation-like: intensity histogram skewed, with lanes well below the mean.
    assert np.percentile(image, 5) < 0.7 < 1.1 < np.percentile(image, 90)


def test_read_image_formats(tmp_path, rng):
    from PIL import Image

    from astropy.io import fits

    data = (rng.random((20, 30)) * 255).astype(np.uint8)
    Image.fromarray(data).save(tmp_path / "a.png")
    Image.fromarray(np.stack([data] * 3, axis=-1)).save(tmp_path / "b.jpg")
    import tifffile

    tifffile.imwrite(tmp_path / "c.tif", data.astype(np.float32) / 7)
    fits.writeto(tmp_path / "d.fits", data.astype(np.float32))
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), data)
    assert read_image(tmp_path / "b.jpg").shape == (20, 30)
    np.testing.assert_allclose(read_image(tmp_path / "c.tif"), data / 7, rtol=1e-6)
    np.testing.assert_allclose(read_image(tmp_path / "d.fits"), data)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.png"):
        read_image(tmp_path / "broken.png")


def test_array_patches_accept_map_like_objects(rng):
    class MapLike:
        data = rng.random((50, 60))

    patches = array_patches(MapLike(), 16, 3, rng=rng)
    assert patches.shape == (3, 16, 16)
    assert np.all(patches > 0)
    np.testing.assert_allclose(patches.mean(axis=(-2, -1)), 1.0, rtol=1e-5)


def test_reshape_folder_skips_bad_files_and_resumes(tmp_path, rng):
    from PIL import Image

    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for name in ("one.png", "sub/two.png"):
        Image.fromarray((rng.random((40, 50)) * 255).astype(np.uint8)).save(folder / name)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "tiny.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    output = tmp_path / "patches.zarr"
    with pytest.warns(SunpyMomfbdUserWarning, match="skipped 2 of 4"):
        report = reshape_images(folder, output, size=16, patches_per_image=3, progress=False)
    assert report["n_patches"] == 6
    assert report["skipped"] == 2
    assert set(report["skipped_files"]) == {"tiny.png", "corrupt.jpg"}
    store = open_store(output, "patches")
    first = store["image"][:]
    assert first.shape == (6, 16, 16)
    assert store["image"].chunks[1:] == (16, 16)
    # Resuming does not repeat finished files; other settings are refused.
    with pytest.warns(SunpyMomfbdUserWarning):
        again = reshape_images(folder, output, size=16, patches_per_image=3, progress=False)
    assert again["n_patches"] == 6
    np.testing.assert_array_equal(open_store(output)["image"][:], first)
    with pytest.raises(ValueError, match="other settings"):
        reshape_images(folder, output, size=16, patches_per_image=4, progress=False)


# ----------------------------------------------------------------------------------- degradation


def test_config_names_a_wrong_field():
    with pytest.raises(ValueError, match="'samplng'"):
        DegradationConfig.from_dict({"samplng": [2, 3]})
    with pytest.raises(ValueError, match="'obscuration'"):
        DegradationConfig(obscuration=(0.1, 1.2))
    with pytest.raises(ValueError, match="'d_over_r0'"):
        DegradationConfig(d_over_r0=(5.0, 2.0))
    assert DegradationConfig.from_dict(TINY.to_dict()) == TINY


def test_apodise_tapers_to_zero_at_the_border():
    image = apodise(np.ones((40, 40)), 0.1)
    assert image[0, 0] < 0.01
    assert image[20, 20] == 1
    assert apodise(np.ones((8, 8)), 0.0)[0, 0] == 1


def test_invariant_sample_is_exact_and_tip_tilt_is_reduced(rng):
    image = procedural_patch(32, rng=rng)
    sample = draw_sample(TINY, rng, image)
    assert sample.modes.shape == (6, 1, 1)
    np.testing.assert_allclose(sample.blurred, _exact(sample.image, sample.modes, sample.conditioning, 6), atol=1e-5)
    full = DegradationConfig(**{**TINY.to_dict(), "tip_tilt_scale": 1.0, "sampling": (3.0, 3.0), "obscuration": (0, 0)})
    reduced = DegradationConfig(**{**full.to_dict(), "tip_tilt_scale": 0.2})
    tilt = {}
    for name, config in (("full", full), ("reduced", reduced)):
        draws = [
            degrade_module.draw_wavefront(config, degrade_module.draw_setup(config, config.rng(i)), config.rng(i))[0]
            for i in range(200)
        ]
        tilt[name] = np.std([d[:2, 0, 0] for d in draws])
    assert tilt["reduced"] / tilt["full"] == pytest.approx(0.2, rel=1e-6)


def test_sampling_below_nyquist_is_drawn_silently():
    config = DegradationConfig(**{**TINY.to_dict(), "sampling": (1.8, 1.9)})
    setup = degrade_module.draw_setup(config, config.rng(0))  # would raise under filterwarnings=error
    assert 1.8 <= setup.sampling <= 1.9


# ----------------------------------------------------------------------------------- stores


def test_build_store_round_trip(tmp_path):
    store = build_samples(tmp_path / "inv.zarr", 5, config=TINY, chunk=2, progress=False)
    attrs = dict(store.attrs)
    assert attrs["kind"] == "invariant"
    assert attrs["n_written"] == 5
    assert DegradationConfig.from_dict(attrs["settings"]["degradation"]) == TINY
    assert attrs["conditioning_fields"] == ["sampling", "obscuration"]
    assert store["modes"].shape == (5, 6, 1, 1)
    assert store["image"].chunks == (2, 32, 32)
    for i in (0, 4):
        exact = _exact(store["image"][i], store["modes"][i], store["conditioning"][i], 6)
        np.testing.assert_allclose(store["blurred"][i], exact, atol=1e-5)
    lo, hi = TINY.sampling
    assert np.all((store["conditioning"][:, 0] >= lo) & (store["conditioning"][:, 0] <= hi))
    assert np.all((store["d_over_r0"][:] >= 2) & (store["d_over_r0"][:] <= 6))
    # Consecutive samples share a set-up (samples_per_setup = 2).
    assert store["conditioning"][0, 0] == store["conditioning"][1, 0] != store["conditioning"][2, 0]


def test_build_resumes_after_interruption(tmp_path, monkeypatch):
    reference = build_samples(tmp_path / "ref.zarr", 5, config=TINY, chunk=2, progress=False)
    calls = {"n": 0}
    original = degrade_module.draw_sample

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    import sunpy_momfbd.database.store as store_module

    monkeypatch.setattr(store_module, "draw_sample", failing)
    with pytest.raises(KeyboardInterrupt):
        build_samples(tmp_path / "resumed.zarr", 5, config=TINY, chunk=2, progress=False)
    assert open_store(tmp_path / "resumed.zarr").attrs["n_written"] == 2
    monkeypatch.setattr(store_module, "draw_sample", original)
    resumed = build_samples(tmp_path / "resumed.zarr", 5, config=TINY, chunk=2, progress=False)
    for name in ("image", "blurred", "modes", "conditioning", "d_over_r0"):
        np.testing.assert_array_equal(resumed[name][:], reference[name][:])
    with pytest.raises(ValueError, match="other settings"):
        build_samples(tmp_path / "resumed.zarr", 6, config=TINY, progress=False)


def test_validation_set_is_spatially_variant(tmp_path):
    store = build_validation(tmp_path / "val.zarr", 3, config=TINY, progress=False)
    assert store.attrs["kind"] == "variant"
    modes = store["modes"][:]
    assert modes.shape == (3, 6, 3, 3)
    assert np.all(modes.std(axis=(-2, -1)).max(axis=1) > 0)  # modes change over the field
    assert np.all(np.isfinite(store["isoplanatic_patch"][:]))
    i = 0
    conditioning = store["conditioning"][i]
    exact = _exact(store["image"][i], modes[i], conditioning, 6)
    np.testing.assert_allclose(store["blurred"][i], exact, atol=1e-5)
    # The variation matters: the field-mean wavefront gives a measurably different image.
    mean = _exact(store["image"][i], modes[i].mean(axis=(-2, -1), keepdims=True), conditioning, 6)
    assert np.abs(mean - exact).max() > 1e-3 * np.abs(exact).max()
    # A validation set never repeats training samples of the same seed.
    train = build_samples(tmp_path / "train.zarr", 1, config=TINY, variant=True, progress=False)
    assert not np.allclose(train["image"][0], store["image"][0])


def test_store_from_patches_and_dataset(tmp_path, rng):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(folder / "x.png")
    reshape_images(folder, tmp_path / "p.zarr", size=32, patches_per_image=2, progress=False)
    store = build_samples(tmp_path / "s.zarr", 3, config=TINY, patches=tmp_path / "p.zarr", progress=False)
    patches = open_store(tmp_path / "p.zarr")["image"][:]
    raw = store["image"][2]
    # Sample 2 uses patch 0 (possibly apodised).
    assert np.corrcoef(raw.ravel(), patches[0].ravel())[0, 1] > 0.9
    dataset = StoreDataset(tmp_path / "s.zarr")
    assert len(dataset) == 3
    assert dataset.kind == "invariant"
    item = dataset[1]
    assert item["image"].shape == (32, 32)
    assert item["modes"].shape == (6, 1, 1)
    with pytest.raises(IndexError):
        dataset[3]
    with pytest.raises(ValueError, match="'patches' store"):
        StoreDataset(tmp_path / "p.zarr")


def test_open_store_rejects_other_directories(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError)):
        open_store(tmp_path / "missing.zarr")


# ----------------------------------------------------------------------------------- on the fly


def test_on_the_fly_dataset_is_reproducible_and_mixes_kinds():
    first = iter(OnTheFlyDataset(TINY, variant_fraction=0.5, seed=3))
    second = iter(OnTheFlyDataset(TINY, variant_fraction=0.5, seed=3))
    samples = [next(first) for _ in range(6)]
    again = [next(second) for _ in range(6)]
    for a, b in zip(samples, again, strict=True):
        torch.testing.assert_close(a["blurred"], b["blurred"])
    grids = {tuple(s["modes"].shape[-2:]) for s in samples}
    assert grids == {(1, 1), (3, 3)}
    batch = collate_samples(samples)
    assert batch["modes"].shape == (6, 6, 3, 3)
    assert batch["conditioning"].shape == (6, 2)
    other = iter(OnTheFlyDataset(TINY, seed=3, rank=1))
    assert not torch.equal(next(other)["image"], samples[0]["image"])


def test_collate_refuses_different_grids():
    a = {
        "image": torch.zeros(4, 4),
        "blurred": torch.zeros(4, 4),
        "conditioning": torch.zeros(2),
        "d_over_r0": torch.tensor(1.0),
    }
    with pytest.raises(ValueError, match="different mode grids"):
        collate_samples([{**a, "modes": torch.zeros(6, 2, 2)}, {**a, "modes": torch.zeros(6, 3, 3)}])


# ----------------------------------------------------------------------------------- CLI


def test_cli_database_build_and_validation(tmp_path, capsys):
    config = tmp_path / "degradation.toml"
    config.write_text(
        "[degradation]\nsize = 32\nn_modes = 6\nd_over_r0 = [2.0, 4.0]\nmode_grid = [2, 2]\n"
        "isoplanatic_patch = [20.0, 40.0]\n"
    )
    assert (
        main(["database", "build", str(tmp_path / "b.zarr"), "-n", "2", "--config", str(config), "--no-progress"]) == 0
    )
    assert "2 invariant samples" in capsys.readouterr().out
    assert (
        main(["database", "validation", str(tmp_path / "v.zarr"), "-n", "1", "--config", str(config), "--no-progress"])
        == 0
    )
    assert "1 variant samples" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[degradation]\nsampling_range = [2, 3]\n")
    assert main(["database", "build", str(tmp_path / "c.zarr"), "-n", "1", "--config", str(bad)]) == 2
    assert "'sampling_range'" in capsys.readouterr().err


def test_cli_database_reshape_reports_skipped(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "bad.png").write_bytes(b"garbage")
    from PIL import Image

    Image.fromarray(np.full((40, 40), 100, np.uint8)).save(folder / "good.png")
    with pytest.warns(SunpyMomfbdUserWarning, match="skipped 1"):
        status = main(["database", "reshape", str(folder), str(tmp_path / "p.zarr"), "--size", "16", "--no-progress"])
    assert status == 0
    assert "skipped 1 unreadable" in capsys.readouterr().out
