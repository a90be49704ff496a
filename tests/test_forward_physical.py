"""PhysicalForward against independent convolutions, brute-force spatially variant blurs and autograd."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import signal

from sunpy_momfbd.forward import PhysicalForward, interpolate_modes
from sunpy_momfbd.optics import OpticalSetup, psf, random_coefficients


def interior_error(image, reference, margin):
    """RMS of the difference over interior pixels, relative to the reference's standard deviation."""
    inner = (slice(None),) + (slice(margin, -margin),) * 2
    difference = (image - reference)[inner]
    return float(np.sqrt(np.mean(np.asarray(difference) ** 2)) / np.std(np.asarray(reference[inner])))


def brute_force_blur(obj, modes, setup, size):
    """Object-space spatially variant blur, one PSF per source pixel, by explicit summation."""
    height, width = obj.shape[-2:]
    per_pixel = F.interpolate(modes, size=(height, width), mode="bilinear", align_corners=False)
    kernels = psf(per_pixel[0].permute(1, 2, 0), setup, size).numpy()
    canvas = np.zeros((height + size, width + size))
    source = obj[0].numpy()
    for y in range(height):
        for x in range(width):
            canvas[y : y + size, x : x + size] += source[y, x] * kernels[y, x]
    return canvas[size // 2 : size // 2 + height, size // 2 : size // 2 + width]


def smooth_modes(rng, setup, grid, d_over_r0, variation):
    """Mode maps: a common wavefront plus a small, smooth field-dependent part."""
    common = random_coefficients(1, d_over_r0, setup.n_modes, rng)[0]
    local = random_coefficients(grid * grid, d_over_r0, setup.n_modes, rng).reshape(grid, grid, -1)
    maps = common + variation * local
    return torch.tensor(maps, dtype=torch.float64).permute(2, 0, 1)[None]


@pytest.mark.parametrize(("grid", "spacing"), [(1, None), (4, 8), (3, 5)])
def test_constant_modes_equal_direct_fft_convolution(rng, grid, spacing):
    setup = OpticalSetup(sampling=2.2, obscuration=0.2)
    model = PhysicalForward(setup, node_spacing=spacing, psf_size=32)
    obj = torch.tensor(rng.random((2, 70, 60)))
    coefficients = random_coefficients(2, 6.0, 44, rng)
    modes = torch.tensor(coefficients)[:, :, None, None].expand(2, 44, grid, grid)
    image = model(obj, modes)
    for b in range(2):
        kernel = psf(coefficients[b], setup, 32)
        # Kernel centred at 16: flip to correlate; full convolution then crop the same-size part.
        expected = signal.fftconvolve(obj[b].numpy(), kernel, mode="full")[16:86, 16:76]
        assert interior_error(image[b : b + 1].numpy(), expected[None], 16) < 1e-4
        np.testing.assert_allclose(image[b].numpy(), expected, atol=1e-12)


def test_point_source_on_a_node_gets_the_psf_of_its_own_wavefront(rng):
    setup = OpticalSetup(sampling=2.5, n_modes=20)
    model = PhysicalForward(setup, node_spacing=9, psf_size=24)
    modes = torch.tensor(rng.normal(scale=0.8, size=(1, 20, 4, 4)))
    obj = torch.zeros(1, 36, 36, dtype=torch.float64)
    obj[0, 22, 13] = 1.0  # 9-pixel cells: nodes on the cell centres 4, 13, 22, 31
    image = model(obj, modes)
    local = interpolate_modes(modes, torch.tensor([22]), torch.tensor([13]), (36, 36))[0, :, 0, 0]
    expected = psf(local, setup, 24)
    canvas = np.zeros((60, 60))
    canvas[22:46, 13:37] = expected.numpy()  # PSF centre (12, 12) on the source at (34, 25)
    np.testing.assert_allclose(image[0].numpy(), canvas[12:48, 12:48], atol=1e-14)


def test_matches_brute_force_spatially_variant_blur_and_converges(rng):
    setup = OpticalSetup(sampling=2.0, n_modes=44)
    obj = torch.tensor(rng.random((1, 40, 40)))
    # Neighbouring grid points differ by ~0.3 rad rms, as across a quarter of an isoplanatic patch.
    modes = smooth_modes(rng, setup, grid=3, d_over_r0=4.0, variation=0.05)
    reference = brute_force_blur(obj, modes, setup, 24)[None]
    errors = {
        s: interior_error(PhysicalForward(setup, node_spacing=s, psf_size=24)(obj, modes).numpy(), reference, 12)
        for s in (14, 7, 4, 2)
    }
    assert errors[7] < 0.01  # within 1 % of the image contrast at two nodes per mode-grid cell
    # Nodes on the mode grid reproduce the bilinear mode maps, leaving a second-order error.
    assert errors[14] > errors[7] > errors[4] > errors[2]
    assert errors[7] / errors[14] < 0.4
    assert errors[2] < 1e-3


def test_flux_is_conserved_for_an_object_away_from_the_border(rng):
    setup = OpticalSetup(sampling=3.0)
    model = PhysicalForward(setup)
    obj = torch.zeros(2, 128, 128, dtype=torch.float64)
    obj[:, 48:80, 48:80] = torch.tensor(rng.random((2, 32, 32)))  # farther than half a PSF (36) from the border
    modes = torch.tensor(rng.normal(scale=0.5, size=(2, 44, 4, 4)))
    image = model(obj, modes)
    np.testing.assert_allclose(image.sum(dim=(-2, -1)), obj.sum(dim=(-2, -1)), rtol=1e-10)
    assert image.min() > -1e-12


def test_gradients_are_correct():
    setup = OpticalSetup(sampling=2.0, n_modes=5)
    model = PhysicalForward(setup, node_spacing=4, psf_size=8)
    generator = torch.Generator().manual_seed(3)
    obj = torch.rand(1, 10, 10, dtype=torch.float64, generator=generator, requires_grad=True)
    modes = (0.3 * torch.randn(1, 5, 2, 2, dtype=torch.float64, generator=generator)).requires_grad_()
    assert torch.autograd.gradcheck(model, (obj, modes))


@pytest.mark.parametrize(("grid", "psf_size", "shape"), [(1, 5, (7, 9)), (2, 5, (9, 7)), (3, 6, (8, 6))])
def test_gradients_are_correct_for_one_psf_and_odd_sizes(grid, psf_size, shape):
    # The FFT convolution has a hand-written backward pass: check it on odd PSFs, odd and
    # non-square fields and the single-PSF path, where the output is cropped from the full convolution.
    setup = OpticalSetup(sampling=2.0, n_modes=5)
    model = PhysicalForward(setup, node_spacing=3, psf_size=psf_size)
    generator = torch.Generator().manual_seed(5)
    obj = torch.rand(1, *shape, dtype=torch.float64, generator=generator, requires_grad=True)
    modes = (0.3 * torch.randn(1, 5, grid, grid, dtype=torch.float64, generator=generator)).requires_grad_()
    assert torch.autograd.gradcheck(model, (obj, modes))


def test_batch_invariance_and_float32(rng):
    setup = OpticalSetup(sampling=2.5)
    model = PhysicalForward(setup, psf_size=24)
    obj = torch.tensor(rng.random((3, 48, 40)), dtype=torch.float32)
    modes = torch.tensor(rng.normal(scale=0.4, size=(3, 44, 3, 2)), dtype=torch.float32)
    batched = model(obj, modes)
    assert batched.dtype == torch.float32
    for b in range(3):
        single = model(obj[b : b + 1], modes[b : b + 1])
        np.testing.assert_allclose(batched[b : b + 1].numpy(), single.numpy(), rtol=1e-5, atol=1e-6)
    exact = model(obj.double(), modes.double())
    np.testing.assert_allclose(batched.numpy(), exact.numpy(), rtol=1e-4, atol=1e-5)


def test_nodes_sit_on_the_mode_grid_and_their_weights_sum_to_one():
    model = PhysicalForward(OpticalSetup(sampling=2.0))
    assert model.node_layout((256, 256), (1, 1)) is None
    along_y, along_x = model.node_layout((250, 100), (5, 4))
    for axis, n_pixels, cell in ((along_y, 250, 50), (along_x, 100, 25)):
        step = np.diff(axis.positions)
        assert np.allclose(step, step[0])
        assert cell / step[0] == round(cell / step[0])  # nodes subdivide the cells
        assert np.any(np.isclose(axis.positions, cell / 2 - 0.5))  # a node on the first cell centre
        total = np.zeros(n_pixels + 200)
        np.add.at(total, axis.pixels + 100, axis.weights)
        np.testing.assert_allclose(total[100 : 100 + n_pixels], 1.0)
    # By default, half the smaller cell on both axes; with one node per cell, the smaller cell.
    assert np.diff(along_y.positions)[0] == 12.5
    assert np.diff(along_x.positions)[0] == 12.5
    assert model.psf_size == 48
    coarse_y, coarse_x = PhysicalForward(OpticalSetup(sampling=2.0), nodes_per_cell=1).node_layout((250, 100), (5, 4))
    assert np.diff(coarse_y.positions)[0] == np.diff(coarse_x.positions)[0] == 25


@pytest.mark.parametrize("d_over_r0", [12.0, 20.0])
def test_psfs_sized_for_the_seeing_hold_a_seeing_limited_psf(d_over_r0):
    setup = OpticalSetup(sampling=2.2)
    default, sized = PhysicalForward(setup).psf_size, PhysicalForward(setup, seeing=d_over_r0).psf_size
    large = 2 * int(np.ceil(64 * setup.sampling))  # 128 λ/D: the whole halo
    kernels = psf(random_coefficients(16, d_over_r0, rng=1), setup, large)

    def energy_within(size):
        start = large // 2 - size // 2
        return kernels[:, start : start + size, start : start + size].sum(axis=(-2, -1))

    assert sized >= 2.5 * d_over_r0 * setup.sampling
    assert energy_within(sized).min() > 0.98
    assert energy_within(default).min() < 0.9  # the default 24 λ/D would wrap some of them
    assert PhysicalForward(setup, seeing=4.0).psf_size == default  # never below the default


@pytest.mark.parametrize(
    ("obj_shape", "modes_shape", "error", "match"),
    [
        ((2, 32, 32), (2, 44, 2), ValueError, r"modes must have shape \(B, n_modes, gy, gx\)"),
        ((32, 32), (1, 44, 2, 2), ValueError, r"obj must have shape \(B, H, W\)"),
        ((2, 32, 32), (3, 44, 2, 2), ValueError, "same batch size"),
        ((2, 32, 32), (2, 36, 2, 2), ValueError, "36 modes but the setup has n_modes = 44"),
    ],
)
def test_bad_inputs_are_named(obj_shape, modes_shape, error, match):
    model = PhysicalForward(OpticalSetup(sampling=2.0))
    with pytest.raises(error, match=match):
        model(torch.zeros(obj_shape), torch.zeros(modes_shape))


def test_non_finite_and_non_tensor_inputs_are_rejected():
    model = PhysicalForward(OpticalSetup(sampling=2.0))
    modes = torch.zeros(1, 44, 1, 1)
    obj = torch.zeros(1, 16, 16)
    obj[0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="obj contains NaN"):
        model(obj, modes)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        model(np.zeros((1, 16, 16)), modes)
    with pytest.raises(ValueError, match="node_spacing"):
        PhysicalForward(OpticalSetup(sampling=2.0), node_spacing=0)
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match=f"nodes_per_cell must be a positive integer, got {bad!r}"):
            PhysicalForward(OpticalSetup(sampling=2.0), nodes_per_cell=bad)
    with pytest.raises(ValueError, match="seeing must be a positive D/r0"):
        PhysicalForward(OpticalSetup(sampling=2.0), seeing=-3.0)


@pytest.mark.gpu
def test_cuda_matches_cpu(rng):
    setup = OpticalSetup(sampling=2.5)
    model = PhysicalForward(setup, psf_size=24)
    obj = torch.tensor(rng.random((2, 64, 64)))
    modes = torch.tensor(rng.normal(scale=0.4, size=(2, 44, 4, 4)))
    on_cpu = model(obj, modes)
    on_gpu = model(obj.cuda(), modes.cuda())
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.cpu().numpy(), on_cpu.numpy(), atol=1e-10)
