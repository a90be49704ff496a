"""
Tests of the neural forward model (EmulatorForward) and its U-Net.
"""

import json
import warnings

import pytest
import torch

from sunpy_momfbd.forward import EmulatorForward, ForwardModel
from sunpy_momfbd.forward.model_card import CONDITIONING_FIELDS, conditioning_vector
from sunpy_momfbd.forward.unet import ConditionalUNet
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

N_MODES = 5


@pytest.fixture
def setup():
    return OpticalSetup(sampling=3.0, obscuration=0.1, n_modes=N_MODES)


@pytest.fixture
def model(setup):
    return EmulatorForward(setup, width=8, depth=2)


def _inputs(batch=2, size=(32, 40), grid=(3, 4), dtype=torch.float32):
    obj = 1 + torch.rand(batch, *size, dtype=dtype)
    modes = 0.5 * torch.randn(batch, N_MODES, *grid, dtype=dtype)
    return obj, modes


def _perturb(model, amount=0.05):
    # Random-init FiLM heads and biases are small; perturb every weight so that no test passes
    # only because part of the network is near identity.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(amount * torch.randn_like(parameter))
    return model


def test_is_forward_model(model):
    assert isinstance(model, ForwardModel)
    assert isinstance(model.network, ConditionalUNet)
    assert model.network.in_channels == 1 + N_MODES


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(32, 40), (29, 37)])
def test_shape_and_dtype(model, dtype, size):
    obj, modes = _inputs(size=size, dtype=dtype)
    image = model(obj, modes)
    assert image.shape == obj.shape
    assert image.dtype == dtype
    assert torch.isfinite(image).all()


def test_gradients_reach_obj_and_modes(model):
    obj, modes = _inputs()
    obj.requires_grad_(True)
    modes.requires_grad_(True)
    (model(obj, modes) * torch.randn(obj.shape)).sum().backward()
    for grad in (obj.grad, modes.grad):
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0
    # Every mode and every grid cell influences the image.
    assert (modes.grad.abs().sum(dim=(0, 2, 3)) > 0).all()
    assert (modes.grad.abs().sum(dim=(0, 1)) > 0).all()


def test_output_depends_on_modes_and_conditioning(setup):
    torch.manual_seed(0)
    model = _perturb(EmulatorForward(setup, width=8, depth=2))
    obj, modes = _inputs()
    image = model(obj, modes)
    assert not torch.allclose(image, model(obj, 2 * modes))
    other = EmulatorForward(OpticalSetup(sampling=4.0, obscuration=0.3, n_modes=N_MODES), width=8, depth=2)
    other.load_state_dict(model.state_dict())
    assert not torch.allclose(image, other(obj, modes))


def test_conditioning_vector(setup):
    vector = conditioning_vector(setup)
    assert CONDITIONING_FIELDS == ("sampling", "obscuration")
    assert vector.tolist() == [3.0, 0.1]
    assert conditioning_vector(setup, ["obscuration"]).tolist() == [0.1]
    with pytest.raises(ValueError, match="unknown conditioning field 'wavelength'"):
        conditioning_vector(setup, ["wavelength"])


def test_intensity_scale(model):
    obj, modes = _inputs()
    image = model(obj, modes)
    assert torch.equal(model(2 * obj, modes), 2 * image)
    torch.testing.assert_close(model(1e4 * obj, modes), 1e4 * image, rtol=1e-5, atol=0)
    # A zero object (in one sample of the batch) gives a zero image there.
    obj[1] = 0
    image = model(obj, modes)
    assert torch.equal(image[1], torch.zeros_like(image[1]))
    assert torch.isfinite(image).all()


def test_batch_invariance(model):
    obj, modes = _inputs(batch=3)
    batched = model(obj, modes)
    for index in range(3):
        single = model(obj[index : index + 1], modes[index : index + 1])
        torch.testing.assert_close(single[0], batched[index], rtol=1e-5, atol=1e-6)


def test_constant_modes_on_1x1_grid_equal_broadcast_grid(model):
    obj, modes = _inputs(grid=(1, 1))
    torch.testing.assert_close(model(obj, modes), model(obj, modes.expand(-1, -1, 3, 3)), rtol=1e-6, atol=1e-6)


def test_autocast_bfloat16(model):
    obj, modes = _inputs()
    reference = model(obj, modes)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        image = model(obj, modes)
    assert image.dtype == torch.float32
    assert torch.isfinite(image).all()
    assert not torch.equal(image, reference)  # it really ran in lower precision
    torch.testing.assert_close(image, reference, rtol=0.05, atol=0.05)
    model.autocast = torch.bfloat16
    option = model(obj, modes)
    assert option.dtype == torch.float32
    assert not torch.equal(option, reference)
    torch.testing.assert_close(option, reference, rtol=0.05, atol=0.05)
    assert model(obj.double(), modes.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="autocast"):
        model.autocast = "bfloat16"


def test_checkpointing_identical(setup):
    plain = _perturb(EmulatorForward(setup, width=8, depth=2))
    checkpointed = EmulatorForward(setup, width=8, depth=2, checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    obj, modes = _inputs()
    results = []
    for model in (plain, checkpointed):
        o = obj.clone().requires_grad_(True)
        m = modes.clone().requires_grad_(True)
        image = model(o, m)
        image.square().sum().backward()
        results.append((image.detach(), o.grad, m.grad, model.network.encoder[0].conv1.weight.grad))
    for first, second in zip(*results, strict=True):
        torch.testing.assert_close(first, second, rtol=1e-6, atol=0)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_radius_is_exact(depth):
    network = ConditionalUNet(1, 2, width=3, depth=depth).double()
    size = 2 * network.receptive_radius + 4 * network.multiple
    size -= size % network.multiple
    inputs = torch.zeros(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    output = network(inputs, torch.tensor([3.0, 0.1], dtype=torch.float64))
    reach = 0
    for offset in range(network.multiple):  # output positions within a coarse pixel
        centre = size // 2 + offset
        (grad,) = torch.autograd.grad(output[0, 0, centre, centre], inputs, retain_graph=True)
        rows, columns = (grad[0, 0] != 0).nonzero().unbind(-1)
        reach = max(reach, (rows - centre).abs().max().item(), (columns - centre).abs().max().item())
    assert reach == network.receptive_radius == 7 * 2**depth - 5


def test_tiling_is_seamless(setup):
    untiled = _perturb(EmulatorForward(setup, width=8, depth=2))
    tiled = EmulatorForward(setup, width=8, depth=2, tile_size=48)
    tiled.load_state_dict(untiled.state_dict())
    assert tiled.halo >= tiled.receptive_radius
    obj, modes = _inputs(batch=2, size=(96, 96), grid=(4, 4))
    reference = untiled(obj, modes)
    torch.testing.assert_close(tiled(obj, modes), reference, rtol=1e-5, atol=1e-5 * reference.abs().max().item())
    # Uneven tiles on a field that is not a multiple of the tile size.
    tiled.tile_size = (32, 48)
    obj, modes = obj[:, :90, :77], modes
    torch.testing.assert_close(tiled(obj, modes), untiled(obj, modes), rtol=1e-5, atol=1e-5)
    # Without a halo the tiles show seams: the test above can fail.
    tiled.halo = 0
    assert not torch.allclose(tiled(obj, modes), untiled(obj, modes), rtol=1e-3, atol=1e-3)


def test_bad_options(setup):
    with pytest.raises(ValueError, match="multiple of 2\\*\\*depth = 4"):
        EmulatorForward(setup, width=8, depth=2, tile_size=30)
    with pytest.raises(ValueError, match="halo"):
        EmulatorForward(setup, width=8, depth=2, halo=-1)
    with pytest.raises(ValueError, match="width"):
        EmulatorForward(setup, width=0, depth=2)


def test_bad_inputs_raise(model):
    obj, modes = _inputs()
    with pytest.raises(ValueError, match="n_modes"):
        model(obj, modes[:, :3])
    with pytest.raises(ValueError, match="modes must have shape"):
        model(obj, modes[:, :, 0])
    obj[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(obj, modes)


# ----------------------------------------------------------------------------------- persistence

RANGES = {"sampling": [2.0, 4.0], "obscuration": [0.0, 0.2], "d_over_r0": [1.0, 20.0]}


def _save(model, path, **kwargs):
    return model.save_pretrained(path, **{"trained_ranges": RANGES, **kwargs})


def test_save_load_round_trip(model, setup, tmp_path):
    _perturb(model)
    assert not model.is_certified(setup)  # in-memory model: empty certified list
    certified = [{"ranges": {"sampling": [2.5, 3.5], "d_over_r0": [1.0, 10.0]}, "error_threshold": 0.02}]
    _save(model, tmp_path / "emulator", certified=certified, data="test data", training={"epochs": 0})
    assert (tmp_path / "emulator" / "model.safetensors").is_file()
    card = json.loads((tmp_path / "emulator" / "model_card.json").read_text())
    assert card["architecture"]["width"] == 8
    assert card["architecture"]["depth"] == 2
    assert card["architecture"]["n_modes"] == N_MODES
    assert card["architecture"]["conditioning"] == ["sampling", "obscuration"]
    assert card["trained_ranges"] == RANGES
    assert card["training"] == {"epochs": 0}
    import sunpy_momfbd

    assert card["package_version"] == sunpy_momfbd.__version__

    loaded = EmulatorForward.from_pretrained(tmp_path / "emulator", setup)
    assert loaded.card == card
    assert len(loaded.weights_sha256) == 64
    assert loaded.weights_sha256 == card["weights_sha256"]
    assert model.weights_sha256 is None
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    obj, modes = _inputs()
    assert torch.equal(loaded(obj, modes), model(obj, modes))

    assert loaded.is_certified(setup)
    assert loaded.is_certified(setup, d_over_r0=5.0)
    assert not loaded.is_certified(setup, d_over_r0=15.0)
    assert not loaded.is_certified(OpticalSetup(sampling=3.8, n_modes=N_MODES))
    assert not loaded.is_certified(OpticalSetup(sampling=3.0, n_modes=N_MODES + 1))


def test_from_pretrained_options(model, setup, tmp_path):
    _save(model, tmp_path)
    loaded = EmulatorForward.from_pretrained(str(tmp_path), setup, device="cpu", tile_size=16, checkpointing=True)
    assert loaded.tile_size == (16, 16)
    assert loaded.checkpointing
    with pytest.raises(TypeError, match="width"):
        EmulatorForward.from_pretrained(tmp_path, setup, width=4)


def test_out_of_range_setup(model, tmp_path):
    _save(model, tmp_path)
    outside = OpticalSetup(sampling=5.0, obscuration=0.1, n_modes=N_MODES)
    with pytest.raises(ValueError, match=r"sampling = 5 is outside the range \[2, 4\]"):
        EmulatorForward.from_pretrained(tmp_path, outside)
    with pytest.warns(SunpyMomfbdUserWarning, match=r"sampling = 5 is outside the range \[2, 4\]"):
        loaded = EmulatorForward.from_pretrained(tmp_path, outside, allow_out_of_range=True)
    assert loaded.setup == outside
    with pytest.raises(ValueError, match=r"obscuration = 0.3 is outside"):
        EmulatorForward.from_pretrained(tmp_path, OpticalSetup(sampling=3.0, obscuration=0.3, n_modes=N_MODES))
    with pytest.raises(ValueError, match="n_modes"):
        EmulatorForward.from_pretrained(tmp_path, OpticalSetup(sampling=3.0, n_modes=N_MODES + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EmulatorForward.from_pretrained(tmp_path, OpticalSetup(sampling=2.0, obscuration=0.2, n_modes=N_MODES))


def test_corrupted_weights(model, setup, tmp_path):
    _save(model, tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"this is not a safetensors file" * 10)
    with pytest.raises(ValueError, match=r"model\.safetensors.*checksum"):
        EmulatorForward.from_pretrained(tmp_path, setup)
    # Without a checksum in the card the parser itself must reject the file, with a clear message.
    card_file = tmp_path / "model_card.json"
    card = json.loads(card_file.read_text())
    card["weights_sha256"] = None
    card_file.write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"model\.safetensors: not a valid safetensors file") as info:
        EmulatorForward.from_pretrained(tmp_path, setup)
    assert info.value.__cause__ is not None


def test_weights_not_matching_architecture(model, setup, tmp_path):
    _save(model, tmp_path / "small")
    EmulatorForward(setup, width=4, depth=2).save_pretrained(tmp_path / "other")
    card = json.loads((tmp_path / "other" / "model_card.json").read_text())
    card["weights_sha256"] = None  # reach the shape check, not the checksum
    (tmp_path / "small" / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"model\.safetensors does not match the architecture.*wrong shape"):
        EmulatorForward.from_pretrained(tmp_path / "small", setup)


def test_non_finite_weights(model, setup, tmp_path):
    with torch.no_grad():
        model.network.head.bias.fill_(float("nan"))
    _save(model, tmp_path)
    with pytest.raises(ValueError, match="not finite"):
        EmulatorForward.from_pretrained(tmp_path, setup)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"format": "something else"}', "not a sunpy-momfbd emulator card"),
    ],
)
def test_corrupted_card(model, setup, tmp_path, content, match):
    _save(model, tmp_path)
    (tmp_path / "model_card.json").write_text(content)
    with pytest.raises(ValueError, match=rf"model_card\.json.*{match}|{match}.*model_card\.json"):
        EmulatorForward.from_pretrained(tmp_path, setup)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("architecture", {"name": "conditional-unet", "width": "wide"}, "architecture.width"),
        ("trained_ranges", {"sampling": [4.0, 2.0]}, "trained_ranges.sampling"),
        ("trained_ranges", {"seeing": [1, 2]}, "unknown parameter 'seeing'"),
        ("certified", [{"ranges": {}}], "error_threshold"),
    ],
)
def test_invalid_card_entries(model, setup, tmp_path, key, value, match):
    _save(model, tmp_path)
    card_file = tmp_path / "model_card.json"
    card = json.loads(card_file.read_text())
    card[key] = value
    card_file.write_text(json.dumps(card))
    with pytest.raises(ValueError, match=match):
        EmulatorForward.from_pretrained(tmp_path, setup)


@pytest.mark.parametrize(
    ("key", "value"),
    [("trained_ranges", {"obscuration": [0.0]}), ("certified", [{"ranges": {"sampling": [1, 2]}}])],
)
def test_save_rejects_invalid_card_entries(model, tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        model.save_pretrained(tmp_path, **{key: value})
    assert not (tmp_path / "model.safetensors").exists()


def test_missing_files(model, setup, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EmulatorForward.from_pretrained(tmp_path / "nowhere", setup)
    _save(model, tmp_path)
    (tmp_path / "model_card.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"model_card\.json"):
        EmulatorForward.from_pretrained(tmp_path, setup)
    _save(model, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        EmulatorForward.from_pretrained(tmp_path, setup)


def test_default_weights_missing(setup, monkeypatch, tmp_path):
    from sunpy_momfbd.forward import pretrained

    monkeypatch.setattr(pretrained, "INSTALLED", tmp_path)
    with pytest.raises(FileNotFoundError, match="no default emulator weights are installed"):
        EmulatorForward.from_pretrained("default", setup)


def test_default_weights_resolve_to_package_data(model, setup, monkeypatch, tmp_path):
    from sunpy_momfbd.forward import pretrained

    _save(model, tmp_path / "default")
    monkeypatch.setattr(pretrained, "INSTALLED", tmp_path)
    loaded = EmulatorForward.from_pretrained("default", setup)
    assert loaded.card["trained_ranges"] == RANGES
    assert pretrained.installed_emulators() == {"default": loaded.card}
