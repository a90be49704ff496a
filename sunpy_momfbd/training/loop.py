"""
The training loop of the emulator: single process, or DistributedDataParallel under ``torchrun``.

`train` builds an `~sunpy_momfbd.forward.EmulatorForward`, feeds it batches that mix on-the-fly
samples and samples from zarr stores, optimises it with AdamW under a warm-up + cosine schedule,
validates on a spatially variant set after every epoch, writes checkpoints (resumable), a PNG of
validation samples and the per-epoch history, and finally saves the weights and model card with
`~sunpy_momfbd.forward.EmulatorForward.save_pretrained`.

Launched by ``torchrun --nproc_per_node=N`` (environment variable ``WORLD_SIZE`` > 1), every
process trains on its own data stream and DDP averages the gradients (backend ``nccl`` on CUDA,
``gloo`` on the CPU); only rank 0 validates and writes files.
"""

import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader
from tqdm.auto import tqdm

from sunpy_momfbd import __version__
from sunpy_momfbd.database.datasets import OnTheFlyDataset, StoreDataset, collate_samples
from sunpy_momfbd.database.store import open_store
from sunpy_momfbd.forward.emulator import EmulatorForward
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.training.certify import certified_ranges, error_summary
from sunpy_momfbd.training.checkpoint import load_checkpoint, save_checkpoint
from sunpy_momfbd.training.config import TrainingConfig
from sunpy_momfbd.training.losses import emulator_loss, relative_error

__all__ = ["TrainingResult", "evaluate", "train"]

#: Seed stream of the validation sets generated in memory (distinct from training streams).
_VALIDATION_SEED = 987_654


@dataclass(frozen=True)
class TrainingResult:
    """
    What a training run produced.

    Parameters
    ----------
    output : `pathlib.Path`
        The run directory.
    emulator : `pathlib.Path` or None
        Directory of the saved emulator (``output / "emulator"``); None on ranks other than 0.
    history : list of dict
        One entry per epoch: step, samples seen, training loss, validation errors, elapsed time.
    validation : dict
        Final validation errors (as in the model card).
    """

    output: Path
    emulator: Path | None
    history: list
    validation: dict


class _Trainable(torch.nn.Module):
    """Wraps the emulator so that DDP sees one forward(obj, modes, conditioning)."""

    def __init__(self, emulator):
        super().__init__()
        self.emulator = emulator

    def forward(self, obj, modes, conditioning):
        return self.emulator.blur_conditioned(obj, modes, conditioning)


def _distributed(config):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    if not dist.is_initialized():
        # NCCL communicates CUDA tensors only: a CPU run needs gloo even where CUDA exists.
        dist.init_process_group("nccl" if _uses_cuda(config) else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size()


def _uses_cuda(config):
    return config.run.device != "cpu" and torch.cuda.is_available()


def _device(config, local_rank):
    wanted = config.run.device
    if wanted == "cuda" and not torch.cuda.is_available():
        msg = "run.device = 'cuda' but CUDA is not available"
        raise ValueError(msg)
    if _uses_cuda(config):
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # one GPU per process, also for NCCL and CUDA's default context
        return device
    return torch.device("cpu")


def _reference_setup(config):
    degradation = config.data.degradation
    return OpticalSetup(
        sampling=max(2.0, float(np.mean(degradation.sampling))),
        obscuration=float(np.mean(degradation.obscuration)),
        n_modes=degradation.n_modes,
    )


def _build_model(config):
    model = config.model
    return EmulatorForward(
        _reference_setup(config),
        width=model.width,
        depth=model.depth,
        film_hidden=model.film_hidden,
        border=None if model.border < 0 else model.border,
    )


def _schedule(config):
    optim = config.optim
    total = optim.epochs * optim.steps_per_epoch

    def factor(step):
        if step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        progress = min(1.0, (step - optim.warmup_steps) / max(1, total - optim.warmup_steps))
        return optim.min_lr_fraction + (1 - optim.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _validation_sets(config):
    """Generate or read the spatially variant (and invariant) validation samples."""
    data = config.data
    sets = {}
    if data.validation_store:
        dataset = StoreDataset(data.validation_store, in_memory=True)
        sets["variant"] = [dataset[i] for i in range(len(dataset))]
    elif data.validation_samples:
        stream = OnTheFlyDataset(data.degradation, variant_fraction=1.0).samples(
            np.random.default_rng([config.run.seed, _VALIDATION_SEED])
        )
        sets["variant"] = [next(stream) for _ in range(data.validation_samples)]
    if data.invariant_validation_samples:
        stream = OnTheFlyDataset(data.degradation, variant_fraction=0.0).samples(
            np.random.default_rng([config.run.seed, _VALIDATION_SEED, 1])
        )
        sets["invariant"] = [next(stream) for _ in range(data.invariant_validation_samples)]
    return sets


def evaluate(emulator, samples, *, batch_size=16, margin=None):
    """
    Relative errors of an emulator on samples, with their parameters.

    Parameters
    ----------
    emulator : `~sunpy_momfbd.forward.EmulatorForward`
    samples : list of dict of `torch.Tensor`
        Samples as the datasets of `sunpy_momfbd.database` yield them.
    batch_size : int, optional
    margin : int, optional
        Border pixels excluded (interior only); ``size // 8`` by default.

    Returns
    -------
    dict of `numpy.ndarray`
        ``error`` (relative RMS error / std of the exact image), ``d_over_r0``, ``sampling``,
        ``obscuration``, one value per sample.
    """
    device = emulator.network.head.weight.device
    errors, d_over_r0, conditioning = [], [], []
    was_training = emulator.training
    emulator.eval()
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            batch = collate_samples(samples[start : start + batch_size])
            size = batch["image"].shape[-1]
            predicted = emulator.blur_conditioned(
                batch["image"].to(device), batch["modes"].to(device), batch["conditioning"].to(device)
            )
            edge = size // 8 if margin is None else margin
            errors.append(relative_error(predicted.cpu(), batch["blurred"], margin=edge).numpy())
            d_over_r0.append(batch["d_over_r0"].numpy())
            conditioning.append(batch["conditioning"].numpy())
    emulator.train(was_training)
    conditioning = np.concatenate(conditioning)
    fields = list(emulator.conditioning_fields)
    result = {"error": np.concatenate(errors), "d_over_r0": np.concatenate(d_over_r0)}
    for name in ("sampling", "obscuration"):
        result[name] = conditioning[:, fields.index(name)] if name in fields else np.full(len(conditioning), np.nan)
    return result


class _Batches:
    """Mixes on-the-fly batches and random batches from stores, per process."""

    def __init__(self, config, rank, epoch):
        data = config.data
        batch = config.optim.batch_size
        self.n_store = 0
        self.stores = None
        if data.stores:
            self.stores = ConcatDataset([StoreDataset(path, in_memory=True) for path in data.stores])
            self.n_store = batch if not data.on_the_fly else round(batch * data.store_fraction)
        self.n_fly = batch - self.n_store
        self.generator = torch.Generator().manual_seed(config.run.seed * 1_000_003 + 7919 * rank + epoch)
        self.fly = None
        if self.n_fly:
            dataset = OnTheFlyDataset(
                data.degradation,
                variant_fraction=data.variant_fraction,
                patches=_patches(data.patches),
                seed=config.run.seed * 1000 + epoch,
                rank=rank,
            )
            loader = DataLoader(
                dataset,
                batch_size=self.n_fly,
                num_workers=data.workers,
                collate_fn=collate_samples,
                worker_init_fn=_single_thread if data.workers else None,
            )
            self.fly = iter(loader)

    def next(self):
        parts = []
        if self.fly is not None:
            parts.append(next(self.fly))
        if self.n_store:
            index = torch.randint(len(self.stores), (self.n_store,), generator=self.generator)
            parts.append(collate_samples([self.stores[int(i)] for i in index]))
        if len(parts) == 1:
            return parts[0]
        grid = max((p["modes"].shape[-2:] for p in parts), key=lambda g: g[0] * g[1])
        for part in parts:
            part["modes"] = part["modes"].expand(-1, -1, *grid)
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def _single_thread(_worker_id):
    torch.set_num_threads(1)


def _patches(path):
    if not path:
        return None
    return np.asarray(open_store(path, "patches")["image"][:])


def _hardware(device, world):
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads per process)"
    return f"{world} x {name}"


def train(config=None, *, progress=None):
    """
    Train an emulator.

    Parameters
    ----------
    config : `~sunpy_momfbd.training.TrainingConfig` or str or `pathlib.Path`, optional
        The configuration, or a TOML file; the defaults when not given.
    progress : bool, optional
        Show progress bars; ``config.run.progress`` by default.

    Returns
    -------
    `TrainingResult`

    Notes
    -----
    Files in ``config.run.output``: ``checkpoint/`` (resumable), ``history.json``,
    ``samples.png`` (validation samples: object, exact, emulated, difference) and ``emulator/``
    (the final weights and model card, loadable with
    ``EmulatorForward.from_pretrained(output / "emulator", setup)``).
    """
    if config is None:
        config = TrainingConfig()
    elif not isinstance(config, TrainingConfig):
        config = TrainingConfig.from_toml(config)
    progress = config.run.progress if progress is None else progress
    rank, local_rank, world = _distributed(config)
    try:
        result = _train(config, rank, local_rank, world, progress)
        if world > 1:
            dist.barrier()  # no process tears the group down while another still works in it
        return result
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(config, rank, local_rank, world, progress):
    start_time = time.monotonic()
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    device = _device(config, local_rank)
    torch.manual_seed(config.run.seed)
    output = Path(config.run.output)
    checkpoint_dir = output / "checkpoint"
    emulator = _build_model(config).to(device)
    trainable = _Trainable(emulator)
    wrapped = (
        DistributedDataParallel(trainable, device_ids=[local_rank] if device.type == "cuda" else None)
        if world > 1
        else trainable
    )
    optimizer = torch.optim.AdamW(emulator.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    amp = config.run.amp and device.type == "cuda"

    first_epoch, step, history, previous_time = 0, 0, [], 0.0
    if config.run.resume and (checkpoint_dir / "state.pt").is_file():
        state = load_checkpoint(checkpoint_dir, emulator.network, optimizer, scheduler, map_location=device)
        first_epoch, step, history = state["epoch"], state["step"], state["history"]
        previous_time = history[-1]["elapsed_s"] if history else 0.0
    validation_sets = _validation_sets(config) if rank == 0 else {}
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)

    for epoch in range(first_epoch, config.optim.epochs):
        batches = _Batches(config, rank, epoch)
        losses = []
        bar = tqdm(
            range(config.optim.steps_per_epoch),
            desc=f"epoch {epoch + 1}/{config.optim.epochs}",
            unit="step",
            disable=not progress or rank != 0,
        )
        emulator.train()
        for _ in bar:
            batch = {key: value.to(device) for key, value in batches.next().items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                predicted = wrapped(batch["image"], batch["modes"], batch["conditioning"])
            loss, parts = emulator_loss(
                predicted.float(),
                batch["blurred"],
                batch["image"],
                mse=config.loss.mse,
                flux=config.loss.flux,
                gradient=config.loss.gradient,
                normalise=config.loss.normalise,
            )
            # Read now, when emulator_loss has just waited for the GPU; read after the step it would
            # wait for the backward pass too, and the next batch could not be prepared meanwhile.
            losses.append(float(loss.detach()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(emulator.parameters(), config.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.set_postfix(loss=f"{losses[-1]:.4g}", rel=f"{math.sqrt(parts['mse']):.3f}")
        bar.close()

        stop = torch.zeros(1, device=device)  # on the GPU under NCCL, which cannot broadcast CPU tensors
        if rank == 0:
            entry = {
                "epoch": epoch + 1,
                "step": step,
                "samples_seen": step * config.optim.batch_size * world,
                "train_loss": float(np.mean(losses)),
                "lr": float(scheduler.get_last_lr()[0]),
            }
            for name, samples in validation_sets.items():
                summary = error_summary(evaluate(emulator, samples)["error"])
                entry[f"val_{name}_median"] = summary["median"]
                entry[f"val_{name}_p95"] = summary["p95"]
            entry["elapsed_s"] = previous_time + time.monotonic() - start_time
            history.append(entry)
            save_checkpoint(
                checkpoint_dir, emulator.network, optimizer, scheduler, epoch=epoch + 1, step=step, history=history
            )
            (output / "history.json").write_text(json.dumps(history, indent=2) + "\n")
            if config.run.plot and "variant" in validation_sets:
                _plot_samples(emulator, validation_sets["variant"][:4], output / "samples.png")
            if progress:
                tqdm.write(json.dumps(entry))
            limit = config.optim.max_minutes * 60
            if limit and entry["elapsed_s"] >= limit:
                stop[0] = 1
        if world > 1:
            dist.broadcast(stop, src=0)
        if stop.item():
            break

    if rank != 0:
        return TrainingResult(output, None, history, {})
    validation = _final_validation(emulator, validation_sets, config)
    training = {
        "time_s": round(history[-1]["elapsed_s"] if history else 0.0, 1),
        "hardware": _hardware(device, world),
        "processes": world,
        "steps": step,
        "samples_seen": step * config.optim.batch_size * world,
        "mixed_precision": bool(amp),
        "torch_version": torch.__version__,
        "package_version": __version__,
        "config": config.to_dict(),
        "learning_curve": [
            {k: e[k] for k in ("samples_seen", "train_loss", "val_variant_median", "val_variant_p95") if k in e}
            for e in history
        ],
    }
    degradation = config.data.degradation
    trained_ranges = {
        "sampling": list(degradation.sampling),
        "obscuration": list(degradation.obscuration),
        "d_over_r0": list(degradation.d_over_r0),
    }
    certified = []
    if "variant" in validation:
        certified, _ = certified_ranges(
            validation["variant"]["errors"],
            validation["variant"]["d_over_r0"],
            trained_ranges,
            median_max=config.run.certify_median,
            p95_max=config.run.certify_p95,
        )
    card_validation = {key: value for key, value in validation.items() if key != "variant"}
    if "variant" in validation:
        card_validation["variant"] = {
            k: v for k, v in validation["variant"].items() if k not in ("errors", "d_over_r0")
        }
    emulator_dir = emulator.save_pretrained(
        output / "emulator",
        trained_ranges=trained_ranges,
        certified=certified,
        data=_describe_data(config),
        validation=card_validation,
        training=training,
    )
    return TrainingResult(output, emulator_dir, history, card_validation)


def _final_validation(emulator, validation_sets, config):
    result = {}
    for name, samples in validation_sets.items():
        measured = evaluate(emulator, samples)
        summary = error_summary(measured["error"])
        summary["metric"] = "relative RMS of (emulator - PhysicalForward) / std(PhysicalForward), interior pixels"
        if name == "variant":
            _, bins = certified_ranges(
                measured["error"],
                measured["d_over_r0"],
                {"d_over_r0": list(config.data.degradation.d_over_r0)},
                median_max=config.run.certify_median,
                p95_max=config.run.certify_p95,
            )
            summary["by_d_over_r0"] = bins
            summary["errors"] = measured["error"].tolist()
            summary["d_over_r0"] = measured["d_over_r0"].tolist()
        result[name] = summary
    return result


def _describe_data(config):
    data = config.data
    degradation = data.degradation
    parts = [
        f"{degradation.size}x{degradation.size} patches, {degradation.n_modes} KL modes with Kolmogorov variances "
        f"(tip-tilt x{degradation.tip_tilt_scale}), D/r0 log-uniform in {list(degradation.d_over_r0)}, "
        f"sampling {list(degradation.sampling)}, obscuration {list(degradation.obscuration)}; "
        f"{degradation.apodised_fraction:.0%} of objects apodised ({degradation.apodisation:.0%} cosine taper); "
        "exact images from PhysicalForward (object zero outside the patch)."
    ]
    if data.on_the_fly:
        source = (
            "image patches from " + data.patches
            if data.patches
            else "procedural scenes (power-law fields, cellular granulation-like patterns, point sources, edges and lines)"
        )
        parts.append(f"On-the-fly samples: {source}, {data.variant_fraction:.0%} spatially variant.")
    if data.stores:
        parts.append(
            f"Stores ({data.store_fraction if data.on_the_fly else 1:.0%} of every batch): {', '.join(map(str, data.stores))}."
        )
    parts.append(
        f"Spatially variant samples: layered frozen turbulence (simulate.turbulent_modes), isoplanatic patch "
        f"{list(degradation.isoplanatic_patch)} px, mode grids {list(degradation.mode_grid)}."
    )
    return " ".join(parts)


def _plot_samples(emulator, samples, path):
    from matplotlib.figure import Figure  # noqa: PLC0415 - plotting is optional and slow to import

    batch = collate_samples(samples)
    device = emulator.network.head.weight.device
    emulator.eval()
    with torch.no_grad():
        predicted = emulator.blur_conditioned(
            batch["image"].to(device), batch["modes"].to(device), batch["conditioning"].to(device)
        ).cpu()
    emulator.train()
    n = len(samples)
    figure = Figure(figsize=(8, 2 * n), layout="constrained")
    axes = figure.subplots(n, 4, squeeze=False)
    for row in range(n):
        exact = batch["blurred"][row]
        panels = (batch["image"][row], exact, predicted[row], predicted[row] - exact)
        titles = ("object", "PhysicalForward", "emulator", "difference")
        for column, (panel, title) in enumerate(zip(panels, titles, strict=True)):
            ax = axes[row, column]
            limits = {} if column in (0, 3) else {"vmin": float(exact.min()), "vmax": float(exact.max())}
            ax.imshow(panel.numpy(), origin="lower", cmap="gray", **limits)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title)
        error = float(relative_error(predicted[row : row + 1], exact[None], margin=exact.shape[-1] // 8)[0])
        axes[row, 0].set_ylabel(f"D/r0 {float(batch['d_over_r0'][row]):.1f}\nerr {error:.3f}")
    figure.savefig(path, dpi=80)
