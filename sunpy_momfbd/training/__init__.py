"""
Training the neural forward model (`~sunpy_momfbd.forward.EmulatorForward`).

* `~sunpy_momfbd.training.config`: the TOML configuration (`TrainingConfig`, `default_toml`);
* `~sunpy_momfbd.training.losses`: the loss (`emulator_loss`) and the error metric (`relative_error`);
* `~sunpy_momfbd.training.loop`: `train` (single process or DDP under ``torchrun``) and `evaluate`;
* `~sunpy_momfbd.training.checkpoint`: resumable checkpoints (safetensors, ``weights_only`` state);
* `~sunpy_momfbd.training.certify`: validation summaries and certified ranges for the model card;
* `~sunpy_momfbd.training.export`: half-precision copies of trained weights for shipping.
"""

from sunpy_momfbd.training.certify import certified_ranges, error_summary
from sunpy_momfbd.training.checkpoint import load_checkpoint, save_checkpoint
from sunpy_momfbd.training.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainingConfig,
    default_toml,
)
from sunpy_momfbd.training.export import export_pretrained
from sunpy_momfbd.training.loop import TrainingResult, evaluate, train
from sunpy_momfbd.training.losses import emulator_loss, relative_error

__all__ = [
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainingConfig",
    "TrainingResult",
    "certified_ranges",
    "default_toml",
    "emulator_loss",
    "error_summary",
    "evaluate",
    "export_pretrained",
    "load_checkpoint",
    "relative_error",
    "save_checkpoint",
    "train",
]
