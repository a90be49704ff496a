"""
The configuration of an emulator training run, read from TOML.

A configuration file has five tables, every one optional; a field left out keeps its default,
and the defaults train a small emulator on procedural data with no file on disk::

    [model]  # architecture of the conditional U-Net
    [data]  # where samples come from, and the ranges of optics and seeing
    [data.degradation]
    [optim]  # optimiser, schedule, batch size, length of the run
    [loss]  # weights of the loss terms
    [run]  # output directory, device, precision, checkpoints, logging

`default_toml` writes a complete file with every field and its documentation as comments. An
unknown table or field is an error that names it.
"""

import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from sunpy_momfbd.database.degrade import DegradationConfig

__all__ = ["DataConfig", "LossConfig", "ModelConfig", "OptimConfig", "RunConfig", "TrainingConfig", "default_toml"]


def _doc(text, default):
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class ModelConfig:
    """
    Architecture of the emulator (`~sunpy_momfbd.forward.EmulatorForward`).
    """

    width: int = _doc("Channels of the U-Net at full resolution (doubling at each level).", 16)
    depth: int = _doc("Number of resolution halvings of the U-Net.", 4)
    film_hidden: int = _doc("Width of the MLP mapping the optics vector to the FiLM scales and shifts.", 64)
    border: int = _doc(
        "Zeros added around the object for the network; -1 uses the receptive radius (exact zero "
        "extension, slow to train). Inference uses the same value (recorded in the model card).",
        16,
    )


@dataclass(frozen=True)
class DataConfig:
    """
    Sources of training and validation samples.
    """

    on_the_fly: bool = _doc(
        "Generate samples in the data loader (procedural objects, invariant PSFs by default).", True
    )
    variant_fraction: float = _doc(
        "Fraction of on-the-fly samples that are spatially variant (about 7x slower to generate).", 0.0
    )
    stores: tuple = _doc("Sample stores (zarr, from 'sunpy-momfbd database build') to train on as well.", ())
    store_fraction: float = _doc("Fraction of every batch drawn from the stores (when stores are given).", 0.5)
    patches: str = _doc(
        "Patch store (from 'database reshape') whose patches replace procedural on-the-fly objects.", ""
    )
    validation_store: str = _doc(
        "Spatially variant validation store (from 'database validation'); empty: generate validation_samples in memory.",
        "",
    )
    validation_samples: int = _doc("Spatially variant validation samples generated when no store is given.", 64)
    invariant_validation_samples: int = _doc("Spatially invariant validation samples generated in memory.", 32)
    workers: int = _doc("Data-loader worker processes for on-the-fly generation (0: in the training process).", 0)
    degradation: DegradationConfig = field(
        default_factory=DegradationConfig,
        metadata={
            "doc": "Ranges of optics and seeing ([data.degradation] table, see sunpy_momfbd.database.DegradationConfig)."
        },
    )


@dataclass(frozen=True)
class OptimConfig:
    """
    Optimiser (AdamW), learning-rate schedule (linear warm-up, cosine decay) and run length.
    """

    lr: float = _doc("Peak learning rate.", 1e-3)
    weight_decay: float = _doc("AdamW weight decay.", 1e-4)
    batch_size: int = _doc("Samples per optimisation step and process.", 16)
    epochs: int = _doc("Number of epochs; validation, checkpoint and sample figure after each.", 10)
    steps_per_epoch: int = _doc("Optimisation steps per epoch.", 200)
    warmup_steps: int = _doc("Steps of linear learning-rate warm-up.", 100)
    min_lr_fraction: float = _doc("Learning rate at the end of the cosine decay, as a fraction of lr.", 0.02)
    grad_clip: float = _doc("Clip the gradient norm to this value (0: no clipping).", 1.0)
    max_minutes: float = _doc("Stop after the epoch that exceeds this wall-clock time (0: no limit).", 0.0)


@dataclass(frozen=True)
class LossConfig:
    """
    Weights of the loss terms (see `sunpy_momfbd.training.emulator_loss`).
    """

    mse: float = _doc("Weight of the mean squared error.", 1.0)
    flux: float = _doc("Weight of the squared error of the mean (flux) of the image.", 0.1)
    gradient: float = _doc("Weight of the mean squared error of the image gradients.", 0.5)
    normalise: str = _doc(
        "Scale of the residuals: 'std' (standard deviation of the exact image: the validation metric) "
        "or 'mean' (mean object intensity, as in Asensio Ramos 2024).",
        "std",
    )


@dataclass(frozen=True)
class RunConfig:
    """
    Output, device, precision, checkpoints and logging.
    """

    output: str = _doc(
        "Output directory: checkpoint/, emulator/ (final weights + card), history.json, PNGs.", "emulator-training"
    )
    resume: bool = _doc("Resume from output/checkpoint when it exists.", True)
    device: str = _doc("'auto' (CUDA when available), 'cpu' or 'cuda'.", "auto")
    amp: bool = _doc("Mixed precision (bfloat16 autocast) on CUDA; ignored on the CPU.", True)
    threads: int = _doc("torch CPU threads per process (0: torch's default).", 0)
    seed: int = _doc("Seed of the weights' initialisation and of on-the-fly data.", 0)
    plot: bool = _doc("Write a PNG of validation samples after every epoch.", True)
    progress: bool = _doc("Show progress bars.", True)
    certify_median: float = _doc("A range is certified when the median validation error is at most this.", 0.03)
    certify_p95: float = _doc("... and the 95th percentile of the validation error at most this.", 0.08)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "loss": LossConfig, "run": RunConfig}


@dataclass(frozen=True)
class TrainingConfig:
    """
    A complete training configuration.

    Parameters
    ----------
    model : `ModelConfig`
    data : `DataConfig`
    optim : `OptimConfig`
    loss : `LossConfig`
    run : `RunConfig`

    Examples
    --------
    >>> from sunpy_momfbd.training import TrainingConfig
    >>> config = TrainingConfig.from_dict({"optim": {"epochs": 2}, "data": {"degradation": {"size": 32}}})
    >>> config.optim.epochs, config.data.degradation.size, config.model.width
    (2, 32, 16)
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        checks = (
            ("model.width", self.model.width >= 1),
            ("model.depth", self.model.depth >= 0),
            ("model.film_hidden", self.model.film_hidden >= 1),
            ("model.border", self.model.border >= -1),
            ("data.variant_fraction", 0 <= self.data.variant_fraction <= 1),
            ("data.store_fraction", 0 <= self.data.store_fraction <= 1),
            ("data.validation_samples", self.data.validation_samples >= 0),
            ("data.invariant_validation_samples", self.data.invariant_validation_samples >= 0),
            ("data.workers", self.data.workers >= 0),
            ("optim.lr", self.optim.lr > 0),
            ("optim.batch_size", self.optim.batch_size >= 1),
            ("optim.epochs", self.optim.epochs >= 1),
            ("optim.steps_per_epoch", self.optim.steps_per_epoch >= 1),
            ("optim.warmup_steps", self.optim.warmup_steps >= 0),
            ("optim.min_lr_fraction", 0 <= self.optim.min_lr_fraction <= 1),
            ("optim.grad_clip", self.optim.grad_clip >= 0),
            ("optim.max_minutes", self.optim.max_minutes >= 0),
            ("loss.normalise", self.loss.normalise in ("std", "mean")),
            ("run.device", self.run.device in ("auto", "cpu", "cuda")),
            ("run.threads", self.run.threads >= 0),
        )
        for name, ok in checks:
            if not ok:
                section, key = name.split(".")
                msg = f"invalid value for {name}: {getattr(getattr(self, section), key)!r}"
                raise ValueError(msg)
        if not self.data.on_the_fly and not self.data.stores:
            msg = "data.on_the_fly is false and data.stores is empty: there is nothing to train on"
            raise ValueError(msg)

    @classmethod
    def from_dict(cls, values):
        """
        Build a configuration from nested dicts (the parsed TOML).

        Parameters
        ----------
        values : dict
            ``{"model": {...}, "data": {..., "degradation": {...}}, ...}``.

        Returns
        -------
        `TrainingConfig`

        Raises
        ------
        ValueError
            Naming the first unknown table or field, or an invalid value.
        """
        unknown = sorted(set(values) - set(_SECTIONS))
        if unknown:
            msg = f"unknown configuration table [{unknown[0]}]; known tables: {', '.join(f'[{s}]' for s in _SECTIONS)}"
            raise ValueError(msg)
        sections = {}
        for name, kind in _SECTIONS.items():
            table = dict(values.get(name, {}))
            known = {f.name: f for f in fields(kind)}
            for key in table:
                if key not in known:
                    msg = f"unknown configuration field {name}.{key}; known fields of [{name}]: {', '.join(known)}"
                    raise ValueError(msg)
            if name == "data" and "degradation" in table:
                table["degradation"] = DegradationConfig.from_dict(table["degradation"])
            for key, value in table.items():
                default = known[key].default
                if default is MISSING or isinstance(default, DegradationConfig):
                    continue
                expected = type(default)
                if expected is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
                    table[key] = value = tuple(value)
                ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
                if not ok or (expected is not bool and isinstance(value, bool)):
                    msg = f"configuration field {name}.{key} must be a {expected.__name__}, got {value!r}"
                    raise ValueError(msg)
                if expected is float:
                    table[key] = float(value)
            sections[name] = kind(**table)
        return cls(**sections)

    @classmethod
    def from_toml(cls, path):
        """
        Read a configuration file.

        Parameters
        ----------
        path : str or `pathlib.Path`

        Returns
        -------
        `TrainingConfig`
        """
        path = Path(path)
        try:
            with open(path, "rb") as stream:
                values = tomllib.load(stream)
        except tomllib.TOMLDecodeError as err:
            msg = f"configuration file {path} is not valid TOML: {err}"
            raise ValueError(msg) from err
        try:
            return cls.from_dict(values)
        except ValueError as err:
            msg = f"{path}: {err}"
            raise ValueError(msg) from err

    def to_dict(self):
        """
        Return the configuration as nested JSON-compatible dicts.

        Returns
        -------
        dict
        """
        result = {}
        for name in _SECTIONS:
            section = getattr(self, name)
            values = asdict(section)
            if name == "data":
                values["degradation"] = section.degradation.to_dict()
                values["stores"] = list(section.stores)
            result[name] = values
        return result


def default_toml():
    """
    Write a complete configuration file with the default values and every field documented.

    Returns
    -------
    str
        TOML text; ``TrainingConfig.from_toml`` of it equals ``TrainingConfig()``.
    """
    lines = ["# sunpy-momfbd emulator training configuration (every field optional).", ""]
    for name, kind in _SECTIONS.items():
        lines.append(f"[{name}]")
        if name == "data":
            lines.append("# (the [data.degradation] table follows this one)")
        for item in fields(kind):
            if item.name == "degradation":
                continue
            lines.append(f"# {item.metadata['doc']}")
            lines.append(f"{item.name} = {_toml_value(item.default)}")
        lines.append("")
        if name == "data":
            lines.append("[data.degradation]")
            doc = DegradationConfig.__doc__
            for key, value in DegradationConfig().to_dict().items():
                lines.append(f"# {_field_doc(doc, key)}")
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
    return "\n".join(lines)


def _field_doc(doc, key):
    """First sentence of a field's description in a numpydoc Parameters section."""
    lines = doc.splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith(f"{key} :"):
            text = []
            for following in lines[index + 1 :]:
                if not following.strip() or " : " in following:
                    break
                text.append(following.strip())
            return " ".join(text)
    return key


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
