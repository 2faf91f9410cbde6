"""Setting a run up: the config (resume policy), the model, optimizer and EMA, and the
state a checkpoint saves and restores."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import torch

from facediff import __version__, cuda_graphs, distributed
from facediff.attributes import AttributeSet
from facediff.categories import CategoryMap, untrained_consequence
from facediff.checkpoint import (
    CHECKPOINTS_DIR,
    EMA_FILE,
    MODEL_FILE,
    RUN_CONFIG_FILE,
    find_usable,
    list_checkpoints,
    load_training_state,
    load_weights,
)
from facediff.compile_cache import (
    CompileCache,
    CompiledOrEager,
    compile_cache,
    should_compile,
)
from facediff.config import (
    ARCHITECTURE_FIELDS,
    ModelConfig,
    TrainConfig,
    attribute_drop_rates,
    preset,
)
from facediff.dataset import PreparedData, category_counts, load_prepared
from facediff.device import enable_fast_math, resolve_device, resolve_precision
from facediff.ema import EMA
from facediff.errors import CheckpointError, DataError, FacediffError
from facediff.host_memory import format_size
from facediff.model import build_unet, scheduler_config
from facediff.objective import make_schedule
from facediff.training.state import Parts, Setup
from facediff.training.step import update

#: ``--balance`` warns about a category it draws more than this many times as often as an
#: unbalanced run would: a few photos repeated that often may be learnt by heart.
BALANCE_REPEATS = 4


def saved_train_config(run_dir: Path) -> TrainConfig | None:
    """The training config of the newest intact checkpoint of ``run_dir`` (None for a new run)."""
    found = find_usable(Path(run_dir))
    if found is None:
        return None
    ckpt, state, _ = found
    try:
        return TrainConfig.from_dict(state["train"])
    except (KeyError, TypeError, ValueError, AttributeError, FacediffError) as e:
        raise CheckpointError(f"checkpoint {ckpt} lacks a valid training config ({e})") from None


def started_config(run_dir: Path) -> TrainConfig | None:
    """The settings of a run stopped before its first checkpoint (its ``config.json``),
    or None: it has checkpoints, or no readable config (a new run)."""
    run_dir = Path(run_dir)
    if list_checkpoints(run_dir):
        return None
    try:
        saved = json.loads((run_dir / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
        return TrainConfig.from_dict(saved["train"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, FacediffError):
        return None  # unreadable or invalid: the run starts anew, as before it had one


def is_run_dir(run_dir: Path) -> bool:
    """Whether ``run_dir`` was written by ``train`` (its config or its checkpoints folder)."""
    if (run_dir / CHECKPOINTS_DIR).is_dir():
        return True
    try:
        config = json.loads((run_dir / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and "facediff_version" in config and "train" in config


def check_run_dir(run_dir: Path, force: bool) -> None:
    """Refuse to write a run into a non-empty folder that is not one (unless ``force``)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise FacediffError(f"--out {run_dir} exists and is not a folder")
    if force or not run_dir.is_dir() or not any(run_dir.iterdir()) or is_run_dir(run_dir):
        return
    raise FacediffError(
        f"--out {run_dir} is not empty and is not a facediff run; choose another --out "
        "(or pass --force to write the run beside its files)"
    )


def resume_config(run_dir: Path, config: TrainConfig | None = None, **options: Any) -> TrainConfig:
    """The config a run trains with (the resume policy of the CLI and the API alike).

    The base is ``config`` when given, else the run's saved config when it has a
    checkpoint, else the settings it was started with when it was stopped before its
    first checkpoint (:func:`started_config`), else the defaults; ``options``
    (:class:`TrainConfig` fields, None = keep the base's value) replace its values.
    Giving ``epochs`` clears ``max_steps`` and the other way round; ``min_snr_gamma=0``
    turns the weighting off (None).
    """
    given = {k: v for k, v in options.items() if v is not None}
    if given.get("min_snr_gamma") == 0:
        given["min_snr_gamma"] = None
    if "epochs" in given and "max_steps" not in given:
        given["max_steps"] = None
    elif "max_steps" in given and "epochs" not in given:
        given["epochs"] = None
    base = config or saved_train_config(run_dir) or started_config(run_dir) or TrainConfig()
    return dataclasses.replace(base, **given)


def _check_resumable(state: dict[str, Any], ckpt: Path, data: PreparedData, cfg: TrainConfig):
    """Refuse to resume on other categories or another architecture/objective."""
    try:
        saved_cats = CategoryMap.from_list(state["categories"])
        saved_train = state["train"]
        model_cfg = ModelConfig.from_dict(state["model"])
        if not isinstance(saved_train, dict):
            raise TypeError("'train' is not an object")
    except (KeyError, TypeError, ValueError, AttributeError, FacediffError) as e:
        raise CheckpointError(f"checkpoint {ckpt} lacks a valid run config ({e})") from None
    if saved_cats.to_list() != data.categories.to_list():
        raise CheckpointError(
            f"cannot resume {ckpt.parent.parent}: it was trained on categories "
            f"{saved_cats.codes} and {data.path} has {data.categories.codes} "
            "(use a new --out folder)"
        )
    for name in ARCHITECTURE_FIELDS:
        if saved_train.get(name) != getattr(cfg, name):
            raise CheckpointError(
                f"cannot resume {ckpt.parent.parent} with --{name.replace('_', '-')} "
                f"{getattr(cfg, name)!r}: it was trained with {saved_train.get(name)!r} "
                "(leave the option out, or use a new --out folder)"
            )
    if model_cfg.sample_size != data.size:
        raise CheckpointError(
            f"cannot resume: the run is {model_cfg.sample_size}px and {data.path} is {data.size}px"
        )
    _check_same_attributes(state, ckpt, data, model_cfg)
    return model_cfg


def _check_same_attributes(
    state: dict[str, Any], ckpt: Path, data: PreparedData, model_cfg: ModelConfig
) -> None:
    """Refuse to resume on another attribute set (runs from before attributes have none)."""
    try:
        saved = AttributeSet.from_list(state.get("attributes"))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {ckpt} lacks a valid attribute list ({e})") from None
    if saved.sizes != tuple(model_cfg.attribute_sizes):
        raise CheckpointError(
            f"checkpoint {ckpt} is inconsistent: attributes {list(saved.names)} do not match "
            f"the model's attribute sizes {list(model_cfg.attribute_sizes)}"
        )
    if saved.to_list() != data.attributes.to_list():
        raise CheckpointError(
            f"cannot resume {ckpt.parent.parent}: it was trained with attributes "
            f"{_describe(saved)} and {data.path} has {_describe(data.attributes)} "
            "(use a new --out folder)"
        )


def _describe(attributes: AttributeSet) -> str:
    if not attributes:
        return "none"
    return "; ".join(f"{a.name} ({', '.join(a.values)})" for a in attributes)


def make_setup(
    data_dir: Path, run_dir: Path, config: TrainConfig, model: ModelConfig | None
) -> tuple[Setup, dict[str, Any] | None, list[str]]:
    notes: list[str] = []
    data = load_prepared(Path(data_dir))
    info = distributed.detect()
    device = distributed.device_for(info, resolve_device(config.device))
    dtype = resolve_precision(config.precision, device)
    found = find_usable(Path(run_dir))
    ckpt, state, warnings = found if found is not None else (None, None, [])
    notes += warnings
    if state is not None:
        model_cfg = _check_resumable(state, ckpt, data, config)
        if model is not None and _arch(model) != _arch(model_cfg):
            raise CheckpointError(f"cannot resume {run_dir} with a different model architecture")
        notes += _data_change(state, data)
    elif model is not None:
        model_cfg = dataclasses.replace(
            model, sample_size=data.size, num_categories=len(data.categories)
        )
    else:
        model_cfg = preset(
            config.preset, sample_size=data.size, num_categories=len(data.categories)
        )
    if state is None:
        model_cfg = dataclasses.replace(model_cfg, attribute_sizes=data.attributes.sizes)
    attribute_drop_rates(config, data.attributes.names)  # names the data's attributes?
    if data.attributes:
        notes.append(f"conditioning on attributes {_describe(data.attributes)}")
    held = data.manifest.get("holdout")
    if isinstance(held, dict):  # prepare --holdout: packed apart, never read here
        notes.append(
            f"training on {len(data)} images; the {held.get('count')} prepare --holdout kept "
            "out are left for evaluate"
        )
    if config.attribute_dropout is not None and not data.attributes:
        notes.append(
            f"note: {data.path} has no attribute labels: the attribute dropout has no effect"
        )
    sched = scheduler_config(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
    )
    counts = category_counts(data)
    notes += untrained_warnings(counts, data)
    if config.balance:
        notes += balance_warnings(counts, data)
    setup = Setup(
        data, Path(run_dir), config, model_cfg, sched, device, dtype, info, ckpt, counts=counts
    )
    return setup, state, notes


def balance_warnings(counts: dict[str, int], data: PreparedData) -> list[str]:
    """A warning per category ``--balance`` draws more than :data:`BALANCE_REPEATS` times
    as often as an unbalanced run would (:mod:`facediff.batches`: each category present
    gets an equal share of every epoch), so its few photos may be learnt by heart."""
    present = [n for n in counts.values() if n > 0]
    share = sum(present) / max(1, len(present))  # draws per category per epoch
    out = []
    for c in data.categories:
        n = counts[c.code]
        if n == 0 or share / n <= BALANCE_REPEATS:
            continue
        photos, them = ("1 photo", "it") if n == 1 else (f"{n} photos", "them")
        out.append(
            f"warning: --balance draws each {c.name} ({c.code}) photo about {share / n:.0f}× as "
            f"often as without it ({photos}; {share:.0f} per category on average): {c.code} "
            f"samples may copy {them} (see evaluate's memorisation section)"
        )
    return out


def untrained_warnings(counts: dict[str, int], data: PreparedData) -> list[str]:
    """A warning (shown even with ``--quiet``) per category without a training image."""
    return [
        f"warning: no training images of {c.name} ({c.code}) in {data.path}: "
        + untrained_consequence(c.code)
        for c in data.categories
        if counts[c.code] == 0
    ]


def _data_change(state: dict[str, Any], data: PreparedData) -> list[str]:
    """A warning (shown even with ``--quiet``) when a run resumes on other images than
    its checkpoint was trained on: same categories and size, other packed file."""
    saved = state.get("data")
    saved = saved if isinstance(saved, dict) else {}
    if saved.get("fingerprint") == data.fingerprint:
        return []
    before = f" ({saved['path']})" if isinstance(saved.get("path"), str) else ""
    return [
        f"warning: {data.path} holds other images than the data this run was trained on"
        f"{before}: continuing on {data.path} (use a new --out folder to keep the runs apart)"
    ]


def _arch(cfg: ModelConfig) -> dict[str, Any]:
    from_data = ("sample_size", "num_categories", "attribute_sizes")
    return {k: v for k, v in cfg.to_dict().items() if k not in from_data}


def run_config(setup: Setup) -> dict[str, Any]:
    """The resolved configuration, as written to ``config.json`` and each ``state.json``."""
    return {
        "facediff_version": __version__,
        "train": setup.config.to_dict(),
        "model": setup.model_config.to_dict(),
        "categories": setup.data.categories.to_list(),
        "attributes": setup.data.attributes.to_list(),
        "scheduler": setup.scheduler_config,
        "data": {
            "path": str(setup.data.path.resolve()),
            "fingerprint": setup.data.fingerprint,
            "counts": setup.counts,
        },
        "world_size": setup.dist.world_size,
        "global_batch_size": setup.global_batch,
        "precision": str(setup.dtype).removeprefix("torch."),
    }


def data_to_device(setup: Setup) -> None:
    """The device's fast-math flags on, and the packed dataset (images, labels, attribute
    labels) moved onto the device once, where every step's batch is indexed from."""
    enable_fast_math(setup.device)
    data = setup.data
    try:
        images = data.images.to(setup.device)
    except torch.OutOfMemoryError:  # not the batch: the one-line OOM message would say so
        size = format_size(data.images.nbytes)
        raise DataError(
            f"the prepared dataset {data.path} ({size} of images) does not fit in the memory of "
            f"{setup.device}, where training keeps it: prepare it again with a smaller --size "
            "or fewer photos"
        ) from None
    data.images, data.labels = images, data.labels.to(setup.device)
    if data.attribute_labels is not None:
        data.attribute_labels = data.attribute_labels.to(setup.device)


def build_parts(setup: Setup, planned_images: int = 0) -> Parts:
    """Model, EMA, optimizer (fused AdamW on CUDA), grad scaler (fp16 only), schedule, and
    the CUDA-graph replay of the update where it applies (:func:`graphs_apply`).

    The step is compiled when :attr:`TrainConfig.compile` says so, or when it is ``None``
    (auto) and :func:`~facediff.compile_cache.should_compile` finds that a run of
    ``planned_images`` pays for the compilation (never on the CPU)."""
    cfg = setup.config
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    unet = build_unet(setup.model_config).to(setup.device)
    if setup.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    unet.train()
    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=cfg.lr,
        betas=tuple(cfg.adam_betas),
        weight_decay=cfg.weight_decay,
        fused=setup.device.type == "cuda" or None,
    )
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.dtype == torch.float16)
    forward: torch.nn.Module = unet
    if setup.dist.enabled:
        ids = [setup.device.index] if setup.device.type == "cuda" else None
        forward = torch.nn.parallel.DistributedDataParallel(unet, device_ids=ids)
    cache = _compile_cache(setup) if cfg.compile is not False else None
    if cache is not None and should_compile(
        cfg.compile, setup.device, images=planned_images, warm=cache.warm, training=True
    ):
        _use_compile_cache(cache)
        forward = CompiledOrEager(torch.compile(forward), forward, strict=cfg.compile is True)
    parts = Parts(
        unet=unet,
        forward=forward,
        optimizer=optimizer,
        scaler=scaler,
        ema=EMA(unet),
        schedule=make_schedule(setup.scheduler_config, setup.device),
        generator=torch.Generator(device=setup.device),
    )
    if graphs_apply(setup):
        parts.graphed = cuda_graphs.GraphedUpdate(
            functools.partial(update, parts, setup), optimizer, setup.device
        )
    return parts


def graphs_apply(setup: Setup) -> bool:
    """Whether the update is replayed as a CUDA graph: :attr:`TrainConfig.cuda_graphs`, or
    by default wherever it applies (:func:`facediff.cuda_graphs.wanted`)."""
    return cuda_graphs.wanted(setup.config.cuda_graphs, cuda_graphs_unsupported(setup))


def cuda_graphs_unsupported(setup: Setup) -> str | None:
    """Why ``--cuda-graphs`` cannot apply to this run (it then trains eagerly), or None."""
    return cuda_graphs.unsupported(setup.device, setup.dtype, setup.dist.enabled)


def _compile_cache(setup: Setup) -> CompileCache:
    """The training step's compile cache (:mod:`facediff.compile_cache`), keyed by model,
    dtype and batch, like sampling's."""
    batch = setup.config.batch_size
    return compile_cache(setup.model_config.to_dict(), setup.device, setup.dtype, batch, "train")


def _use_compile_cache(cache: CompileCache) -> None:
    """Compile through ``cache``; its artifact is written when the process exits (a
    failure to write is silent: it is only a cache)."""
    import atexit
    import warnings

    cache.activate()
    cache.load()  # a corrupt artifact is removed: a Python warning, then a cold compile
    for message in cache.warnings:
        warnings.warn(message.removeprefix("warning: "), RuntimeWarning, stacklevel=2)
    atexit.register(cache.save)


def training_state(parts: Parts, setup: Setup) -> dict[str, Any]:
    """Optimizer, grad scaler and RNG states (tensors, numbers, strings: weights_only-safe)."""
    rng: dict[str, Any] = {"torch_cpu": torch.get_rng_state()}
    if setup.device.type == "cuda":
        rng["torch_cuda"] = torch.cuda.get_rng_state(setup.device)
    return {
        "optimizer": _portable(parts.optimizer.state_dict()),
        "grad_scaler": parts.scaler.state_dict() if parts.scaler.is_enabled() else {},
        "rng": rng,
    }


def _portable(optimizer_state: dict[str, Any]) -> dict[str, Any]:
    """The optimizer state as an eager run saves it: a CUDA-graphed run's learning rate is
    a device tensor and its groups are ``capturable``, which an eager resume (or one on
    another device) must not inherit."""
    for group in optimizer_state["param_groups"]:
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
            group["capturable"] = False
    return optimizer_state


def restore(parts: Parts, setup: Setup, ckpt: Path) -> None:
    """Load weights, EMA, optimizer, scaler and RNG states from ``ckpt``."""
    ts = load_training_state(ckpt)
    try:
        parts.unet.load_state_dict(load_weights(ckpt / MODEL_FILE))
        parts.ema.load_state_dict(load_weights(ckpt / EMA_FILE))
        parts.optimizer.load_state_dict(ts["optimizer"])
        if parts.scaler.is_enabled() and ts.get("grad_scaler"):
            parts.scaler.load_state_dict(ts["grad_scaler"])
        torch.set_rng_state(ts["rng"]["torch_cpu"])
        if setup.device.type == "cuda" and "torch_cuda" in ts["rng"]:
            torch.cuda.set_rng_state(ts["rng"]["torch_cuda"], setup.device)
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {ckpt} cannot be loaded: {first_line}") from None
