"""
GPU readiness without a GPU: device placement, host synchronisations and mixed precision.

No GPU runs these tests, so they emulate what a GPU would refuse or pay for:

* **The "meta" device** stands in for CUDA. Meta tensors carry shapes and dtypes but no data, and
  the `CudaRules` dispatch mode applies CUDA's device rules to every aten operation, forward and
  backward: an operation that mixes a meta tensor with a non-scalar CPU tensor raises, as it would
  on CUDA. (Meta kernels alone are laxer than CUDA: they accept CPU operands in ``matmul``,
  ``einsum``, ``index_select`` and ``gather``.) The mode also records host→device copies (each a
  synchronous transfer on CUDA), host synchronisations (``.item()``, ``float(tensor)``,
  ``bool(tensor)``) and float64 tensors on the device (the MPS backend has no float64). Every
  operation of the forward models has a meta kernel, FFTs and ``torch.polar`` included; what cannot
  run on meta is data-dependent (``.item()``, boolean masks), so the input check of
  ``ForwardModel.forward`` is exercised on the CPU instead, where syncs are counted.
* **CPU autocast** lowers matrix products and convolutions to bfloat16 as CUDA autocast does, but
  it quietly upcasts FFT and ``torch.polar`` inputs to float32, which CUDA does not (cuFFT rejects
  bfloat16). `StrictAutocast` refuses half-precision inputs to those functions, as CUDA would.
"""

import contextlib
from collections import Counter

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from sunpy_momfbd.forward import EmulatorForward, ForwardModel, PhysicalForward, interpolate_modes
from sunpy_momfbd.optics import OpticalSetup, psf
from sunpy_momfbd.optics.psf import _pupil_and_modes
from sunpy_momfbd.simulate import simulate_frames
from sunpy_momfbd.training.losses import emulator_loss
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

META = torch.device("meta")
aten = torch.ops.aten
_COPIES = {aten._to_copy.default, aten.copy_.default}
# CUDA accepts CPU index tensors in advanced indexing (it copies them to the device).
_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
# Operations whose result the host must wait for on CUDA (a value or a data-dependent shape).
_SYNCS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.equal.default, aten.is_nonzero.default}


class CudaRules(TorchDispatchMode):
    """
    Apply CUDA's device rules to every aten operation and record what would cost a GPU time.

    Raises a `RuntimeError` naming the operation when an operation mixes devices, except for
    zero-dimensional CPU tensors (Python scalars, which CUDA accepts), copies between devices and
    the indices of advanced indexing.

    Attributes
    ----------
    transfers : list of str
        Operations that copied a host tensor to another device (each one synchronous on CUDA).
    syncs : list of str
        Operations whose result the host waits for.
    float64 : list of str
        Operations that produced float64 or complex128 tensors off the host.
    """

    def __init__(self):
        super().__init__()
        self.transfers, self.syncs, self.float64 = [], [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        devices = {t.device for t in tensors}
        if func in _SYNCS:
            self.syncs.append(str(func))
        if func not in _COPIES and func not in _INDEXING:
            devices = {t.device for t in tensors if not (t.device.type == "cpu" and t.ndim == 0)}
            if len(devices) > 1:
                msg = f"{func} mixes devices {sorted(map(str, devices))}: CUDA would refuse it"
                raise RuntimeError(msg)
        out = func(*args, **kwargs)
        outputs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        if (func in _COPIES or func in _INDEXING) and len({t.device for t in tensors + outputs}) > 1:
            if any(t.device.type == "cpu" and t.ndim > 0 for t in tensors):
                self.transfers.append(str(func))
        for t in outputs:
            if t.device.type != "cpu" and t.dtype in (torch.float64, torch.complex128):
                self.float64.append(str(func))
        return out


class StrictAutocast(TorchFunctionMode):
    """Refuse float16/bfloat16 inputs to FFTs and `torch.polar`, as CUDA does under autocast."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if func in (torch.polar, torch.complex) or name.startswith("fft_"):
            for t in pytree.tree_leaves((args, kwargs)):
                if isinstance(t, torch.Tensor) and t.dtype in (torch.float16, torch.bfloat16):
                    msg = f"{name} got a {t.dtype} tensor, which CUDA refuses"
                    raise RuntimeError(msg)
        return func(*args, **kwargs)


@pytest.fixture(autouse=True)
def _clear_psf_cache():
    """Drop cached pupils on the meta device (keyed by device) after each test."""
    yield
    _pupil_and_modes.cache_clear()


def _forward_backward(function, *inputs, device=META, dtype=torch.float32):
    """Run ``function`` on fresh leaf tensors of the given shapes, then back-propagate a sum."""
    leaves = [torch.zeros(shape, device=device, dtype=dtype, requires_grad=True) for shape in inputs]
    output = function(*leaves)
    output.sum().backward()
    return output, [leaf.grad for leaf in leaves]


def _emulator(setup, depth=2, **options):
    torch.manual_seed(0)
    return EmulatorForward(setup, width=4, depth=depth, **options)


def _unregistered_tensors(module):
    """Tensor attributes of a module and its children that ``.to(device)`` would not move."""
    found = []
    for name, child in module.named_modules():
        registered = set(child._parameters) | set(child._buffers)
        found += [
            f"{name}.{key}" for key, value in vars(child).items() if torch.is_tensor(value) and key not in registered
        ]
    return found


# ----------------------------------------------------------------------------------- meta device


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sampling", [2.5, 0.7])  # 0.7: oversampled grid and decimation
def test_psf_stays_on_the_device(dtype, sampling):
    with pytest.warns(SunpyMomfbdUserWarning, match="below Nyquist") if sampling < 2 else contextlib.nullcontext():
        setup = OpticalSetup(sampling=sampling, n_modes=10)
    psf(torch.zeros(1, 10, device=META, dtype=dtype), setup, 16)  # fill the cache
    with CudaRules() as rules:
        kernels, (grad,) = _forward_backward(lambda c: psf(c, setup, 16), (3, 10), dtype=dtype)
    assert (kernels.device, kernels.dtype, kernels.shape) == (META, dtype, (3, 16, 16))
    assert (grad.device, grad.dtype) == (META, dtype)
    assert rules.transfers == []  # pupil, modes and centring phase are cached on the device
    assert rules.syncs == []
    if dtype == torch.float32:
        assert rules.float64 == []


@pytest.mark.parametrize("grid", [(1, 1), (4, 4)])
def test_physical_forward_stays_on_the_device(grid):
    model = PhysicalForward(OpticalSetup(sampling=2.5, n_modes=10), psf_size=16)
    with CudaRules() as rules:
        # _blur: forward() adds the input check, a host sync that cannot run on meta (tested below).
        image, (obj_grad, modes_grad) = _forward_backward(model._blur, (2, 48, 40), (2, 10, *grid))
    assert (image.device, image.dtype, image.shape) == (META, torch.float32, (2, 48, 40))
    assert obj_grad.device == modes_grad.device == META
    assert rules.syncs == []
    assert rules.float64 == []


def test_physical_forward_makes_no_host_copies():
    model = PhysicalForward(OpticalSetup(sampling=2.5, n_modes=10), psf_size=16)
    _forward_backward(model._blur, (2, 48, 40), (2, 10, 4, 4))  # fill the caches
    with CudaRules() as rules:
        _forward_backward(model._blur, (2, 48, 40), (2, 10, 4, 4))
    assert rules.transfers == []


@pytest.mark.parametrize(
    "options", [{}, {"tile_size": 16, "halo": 4}, {"checkpointing": True}], ids=["whole", "tiled", "checkpointing"]
)
def test_emulator_stays_on_the_device(options):
    model = _emulator(OpticalSetup(sampling=3.0, n_modes=4), **options).to(META)
    with CudaRules() as rules:
        image, (obj_grad, modes_grad) = _forward_backward(model._blur, (2, 30, 37), (2, 4, 3, 3))
    assert (image.device, image.dtype, image.shape) == (META, torch.float32, (2, 30, 37))
    assert obj_grad.device == modes_grad.device == META
    assert rules.transfers == []
    assert rules.syncs == []
    assert rules.float64 == []


def test_emulator_takes_a_host_conditioning_vector():
    model = _emulator(OpticalSetup(sampling=3.0, n_modes=4)).to(META)
    obj, modes = torch.zeros(2, 32, 32, device=META), torch.zeros(2, 4, 1, 1, device=META)
    with CudaRules():
        image = model._blur(obj, modes, torch.tensor([[3.0, 0.1], [2.5, 0.0]], dtype=torch.float64))
    assert image.device == META


def test_interpolate_modes_stays_on_the_device():
    with CudaRules() as rules:
        maps, _ = _forward_backward(
            lambda m: interpolate_modes(m, torch.arange(7, device=META), torch.arange(5, device=META), (7, 5)),
            (2, 3, 2, 2),
        )
    assert maps.device == META
    assert maps.shape == (2, 3, 7, 5)
    assert rules.transfers == rules.syncs == []


@pytest.mark.parametrize("kind", ["physical", "emulator"])
def test_forward_models_register_every_tensor(kind):
    # Tensors held as plain attributes would stay behind on model.to("cuda").
    setup = OpticalSetup(sampling=3.0, n_modes=4)
    model = PhysicalForward(setup) if kind == "physical" else _emulator(setup)
    assert _unregistered_tensors(model) == []
    moved = model.to(META)
    assert all(t.device == META for t in (*moved.parameters(), *moved.buffers()))


def test_rules_catch_what_meta_kernels_let_through():
    # The checks themselves: meta kernels accept a CPU operand in matmul, CUDA (and CudaRules) do not.
    on_device = torch.zeros(3, 4, device=META)
    assert (on_device @ torch.zeros(4, 2)).device == META
    with CudaRules(), pytest.raises(RuntimeError, match="mixes devices"):
        on_device @ torch.zeros(4, 2)
    with CudaRules() as rules:
        on_device * torch.tensor(2.0)  # a 0-d host tensor is a scalar on CUDA too
        torch.as_tensor(np.ones(3), device=META)
    assert rules.transfers == ["aten._to_copy.default"]


# -------------------------------------------------------------------- host syncs, on real data


@pytest.mark.parametrize("kind", ["physical", "emulator"])
def test_one_host_sync_per_forward_call(kind):
    # The finiteness check of both inputs is the only place a GPU would wait for the host.
    setup = OpticalSetup(sampling=3.0, n_modes=10)
    model = PhysicalForward(setup, psf_size=16) if kind == "physical" else _emulator(setup, depth=1)
    obj = torch.rand(2, 32, 32, requires_grad=True)
    modes = (0.3 * torch.randn(2, 10, 2, 2)).requires_grad_()
    with CudaRules() as rules:
        model(obj, modes).sum().backward()
    assert rules.syncs == ["aten._local_scalar_dense.default"]


def test_emulator_loss_reads_its_terms_in_one_copy():
    # The three terms come back in one .tolist() (one device-to-host copy on CUDA, invisible on the
    # CPU), not three float() calls (three syncs).
    predicted, target, obj = torch.rand(3, 2, 16, 16).unbind()
    with CudaRules() as rules:
        total, parts = emulator_loss(predicted.requires_grad_(), target, obj)
    assert rules.syncs == []
    assert Counter(type(v) for v in parts.values()) == Counter({float: 3})
    scale = target.std(dim=(-2, -1), keepdim=True)
    assert parts["mse"] == pytest.approx(float(((predicted.detach() - target) / scale).square().mean()))
    assert total.requires_grad


# ------------------------------------------------------------------------------ mixed precision


@pytest.mark.parametrize("grid", [(1, 1), (3, 3)])
def test_physical_forward_under_autocast_runs_in_float32(grid, rng):
    # Nothing in PhysicalForward gains from bfloat16; its PSFs need float32 phases and FFTs.
    model = PhysicalForward(OpticalSetup(sampling=2.5, n_modes=21), psf_size=24)
    obj = torch.tensor(1 + rng.random((2, 40, 40)), dtype=torch.float32)
    modes = torch.tensor(rng.normal(scale=0.5, size=(2, 21, *grid)), dtype=torch.float32)
    results = []
    for autocast in (False, True):
        inputs = [obj.clone().requires_grad_(), modes.clone().requires_grad_()]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), StrictAutocast():
            image = model(*inputs)
        weights = torch.linspace(-1, 1, image.numel()).reshape(image.shape)
        (image * weights).sum().backward()  # outside autocast, as the solver does
        results.append((image.detach(), *(t.grad for t in inputs)))
    assert results[1][0].dtype == torch.float32
    for low, full in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(low, full, rtol=1e-6, atol=1e-7)


def test_psf_of_half_precision_coefficients_is_float32():
    setup = OpticalSetup(sampling=2.5, n_modes=10)
    coefficients = 0.5 * torch.randn(2, 10)
    reference = psf(coefficients, setup, 16)
    with StrictAutocast():
        for dtype in (torch.bfloat16, torch.float16):
            kernels = psf(coefficients.to(dtype), setup, 16)
            assert kernels.dtype == torch.float32
            torch.testing.assert_close(kernels, psf(coefficients.to(dtype).float(), setup, 16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(psf(coefficients, setup, 16), reference, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("how", ["caller", "option"])
def test_emulator_under_autocast_is_close_to_float32(how):
    # Measured with the shipped weights on a 64² granulation-like scene and a spatially variant
    # Kolmogorov wavefront (D/r0 = 10): the bfloat16 image differs from the float32 one by 2.5 % of
    # the image's standard deviation (RMS), its gradients by 2-3 % in norm, far below the
    # emulator's own error against PhysicalForward (~46 %). Random small weights are used here.
    setup = OpticalSetup(sampling=3.0, n_modes=10)
    model = _emulator(setup, depth=1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    obj = 1 + torch.rand(2, 24, 24)
    modes = 0.5 * torch.randn(2, 10, 2, 2)
    results = []
    for low in (False, True):
        inputs = [obj.clone().requires_grad_(), modes.clone().requires_grad_()]
        caller = torch.autocast("cpu", dtype=torch.bfloat16, enabled=low and how == "caller")
        model.autocast = torch.bfloat16 if low and how == "option" else None
        with caller, StrictAutocast():
            image = model(*inputs)
        image.square().sum().backward()
        results.append((image.detach(), *(t.grad for t in inputs)))
    (image, *grads), (reference, *reference_grads) = results[1], results[0]
    assert image.dtype == torch.float32
    assert not torch.equal(image, reference)  # it really ran in bfloat16
    assert (image - reference).square().mean().sqrt() < 0.05 * reference.std()
    for grad, full in zip(grads, reference_grads, strict=True):
        assert (grad - full).norm() < 0.1 * full.norm()


def test_strict_autocast_catches_half_precision_ffts():
    # CPU autocast alone would let this through: it upcasts FFT inputs, CUDA does not.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spectrum = torch.fft.rfft2(torch.ones(4, 4) @ torch.ones(4, 4))
        assert spectrum.dtype == torch.complex64
        with StrictAutocast(), pytest.raises(RuntimeError, match=r"fft_rfft2 got a torch\.bfloat16"):
            torch.fft.rfft2(torch.ones(4, 4) @ torch.ones(4, 4))


# ---------------------------------------------------------------------------------------- caches


def test_psf_cache_filled_under_inference_mode_serves_autograd():
    setup = OpticalSetup(sampling=2.5, n_modes=10)
    with torch.inference_mode():
        psf(torch.zeros(1, 10), setup, 16)
    coefficients = torch.zeros(2, 10, requires_grad=True)
    psf(coefficients, setup, 16).square().sum().backward()
    assert coefficients.grad is not None


def test_simulate_frames_runs_the_model_on_its_device():
    seen = []

    class OnMeta(ForwardModel):
        def __init__(self, setup):
            super().__init__(setup)
            self.register_buffer("anchor", torch.zeros(1, device=META))

        def forward(self, obj, modes):
            seen.extend([obj.device, modes.device])
            return torch.zeros(obj.shape, dtype=obj.dtype)  # meta data cannot be copied to the host

    setup = OpticalSetup(sampling=2.5, n_modes=4)
    frames = simulate_frames(np.ones((16, 16)), np.zeros((3, 4, 1, 1)), setup, model=OnMeta(setup))
    assert frames.shape == (3, 16, 16)
    assert seen == [META, META]
