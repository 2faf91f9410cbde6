"""A persistent ``torch.compile`` cache, and when compiling pays (``--compile`` auto).

Compiling the UNet takes over a minute on a GPU. Inductor caches what it compiles (the FX
graph cache and the autotuning cache) in ``TORCHINDUCTOR_CACHE_DIR``; facediff points that
at a folder of the user's cache directory, one per machine::

    $XDG_CACHE_HOME/facediff/compile/torch-<version>/<device>/inductor/   (inductor's own)
    $XDG_CACHE_HOME/facediff/compile/torch-<version>/<device>/<shape key>.bin

so a second process compiling the same model shape on the same machine reuses the kernels
(``~/.cache`` when ``XDG_CACHE_HOME`` is unset; an explicit ``TORCHINDUCTOR_CACHE_DIR`` is
respected). The ``.bin`` file is PyTorch's portable "mega-cache"
(:func:`torch.compiler.save_cache_artifacts`), written after a process compiled a model
shape (model config, dtype, the batch sizes it is called with) and loaded back before
compiling that shape again; its presence is what "a warm cache exists" means to
:func:`should_compile`. A corrupt or stale artifact is ignored with a warning and removed,
never fatal: the compile then runs cold.

A compiled model is wrapped in :class:`CompiledOrEager`: when compiling itself fails (no
Triton, an unsupported GPU, an inductor bug), the auto default goes on eagerly with a
warning, and an explicit ``--compile`` stops with a one-line :class:`CompileFailed`.

The torch version and device are part of the folder name, so an upgrade or another GPU
never reads kernels built for something else.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facediff.errors import FacediffError, first_line

#: ``auto`` compiles a cold model shape only for jobs of at least this many images. Measured
#: on an H200 by ``benchmarks/sample_throughput.py --quick`` (``base`` at 64 px, batch 256,
#: 25 guided steps): 49.0 images/s eager and 137.2 compiled in steady state, and a
#: ``--compile`` process on a cold cache took ~47 s longer than eager would have for its
#: images, so compiling pays from 47 / (1/49.0 - 1/137.2) ≈ 3,600 images.
COLD_MIN_IMAGES = 3600
#: ... and a shape whose compile cache is warm for jobs of at least this many images: the
#: same measurement put a warm compile (tracing, loading the cached kernels) at ~17 s, which
#: pays from ≈ 1,300 images.
WARM_MIN_IMAGES = 1300

#: Training (``train`` without ``--compile``/``--no-compile``) compiles a cold model shape
#: for runs of at least this many images. Measured on an H200 by
#: ``benchmarks/train_default.py`` (``base`` at 64 px, the default batch of 32, UTKFace):
#: eager 339 images/s, compiled 469 (the median of every 100-step window of the cold and warm
#: compiled rows; 375-632), and the cold compile put the first step 78 s later than eager's
#: (114 s against 36 s after launch): compiling pays from 78 / (1/339 - 1/469) ≈ 96,000 images.
#: With the update replayed as a CUDA graph (the default where it applies,
#: :mod:`facediff.cuda_graphs`): 585 images/s uncompiled and 1,271 compiled, first step at
#: 12.6 s and 108.7 s, so from 96.1 / (1/585 - 1/1271) ≈ 104,000. Between the two: 100,000.
TRAIN_COLD_MIN_IMAGES = 100_000
#: ... and a warm shape from this many: with a warm cache the compiled first step came 29 s
#: after launch, about 16.5 s after a graphed uncompiled run's (12.6 s, measured in another
#: session on the same kind of machine), which pays from 16.5 / (1/585 - 1/1271) ≈ 18,000
#: images.
TRAIN_WARM_MIN_IMAGES = 18_000
#: A ``--time-budget`` run plans this many images per second of its budget (the uncompiled
#: rate above): a budget under ~4.9 minutes trains uncompiled on a cold cache (~53 s warm).
TRAIN_BUDGET_IMAGES_PER_S = 340
#: The same where the update is replayed as a CUDA graph: under ~2.8 minutes cold (~31 s
#: warm).
TRAIN_BUDGET_GRAPHED_IMAGES_PER_S = 585

_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def should_compile(
    setting: bool | None,
    device: torch.device,
    *,
    images: int,
    warm: bool,
    training: bool = False,
    shapes: int = 1,
) -> bool:
    """Whether to ``torch.compile`` the model: the one ``--compile`` policy.

    An explicit ``True``/``False`` (``--compile``/``--no-compile``) is obeyed on any device.
    ``None`` (auto, the default) never compiles on the CPU — CPU sampling and training stay
    exactly as they were — and on CUDA compiles when the job makes up for the compilation:
    ``images`` (sampled, or trained on when ``training``) of at least :data:`WARM_MIN_IMAGES`
    (:data:`TRAIN_WARM_MIN_IMAGES`) when this model shape's cache is ``warm``, else at least
    :data:`COLD_MIN_IMAGES` (:data:`TRAIN_COLD_MIN_IMAGES`), per input shape the job
    compiles for: a compiled model compiles once for every batch size it is called with
    (``shapes``; a sampling job that mixes categories, pairs and OIE calls it with 2, 3
    and 4 conditions per image), and each compilation costs about as much as the first.
    """
    if setting is not None:
        return bool(setting)
    if device.type != "cuda":
        return False
    if training:
        per_shape = TRAIN_WARM_MIN_IMAGES if warm else TRAIN_COLD_MIN_IMAGES
    else:
        per_shape = WARM_MIN_IMAGES if warm else COLD_MIN_IMAGES
    return images >= per_shape * max(1, shapes)


class CompileFailed(FacediffError):
    """``torch.compile`` could not compile the model and ``--compile`` was asked for."""


#: Warnings Dynamo prints while tracing diffusers' UNet that say nothing a user can act on:
#: ``Upsample2D`` asks ``is_torch_version("<", "2.1")`` (an ``lru_cache``-wrapped constant)
#: in bf16, and Dynamo warns that it traces through the cache ("silent incorrectness is
#: only a potential risk"). Seen on every bf16 compile on the H200.
QUIET_COMPILE_WARNINGS = (r"Dynamo detected a call to a `functools\.lru_cache`-wrapped function",)


class CompiledOrEager(torch.nn.Module):
    """Calls ``compiled``; if its first call with an input shape (a compilation) fails
    while the same call runs eagerly, the compiler is at fault: ``strict`` (an explicit
    ``--compile``) raises :class:`CompileFailed`, else (auto) a :class:`RuntimeWarning`
    says so and every call from then on runs ``eager``. An error the eager model raises
    too is the caller's, and propagates as it is; so does running out of memory."""

    def __init__(self, compiled, eager: torch.nn.Module, *, strict: bool) -> None:
        super().__init__()
        self._modules_called = (compiled, eager)  # a tuple: not registered as submodules
        self.strict = strict
        self.proven: set[tuple] = set()  # input shapes the compiled model ran
        self.fell_back: str | None = None  # why it is not used any more

    def forward(self, *args, **kwargs):
        compiled, eager = self._modules_called
        if self.fell_back is not None:
            return eager(*args, **kwargs)
        # one compilation per input shape (and per optional input given or not)
        shape = tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else a is None for a in args)
        if shape in self.proven:
            return compiled(*args, **kwargs)
        try:
            with warnings.catch_warnings():  # while this shape compiles
                for message in QUIET_COMPILE_WARNINGS:
                    warnings.filterwarnings("ignore", message=message, category=UserWarning)
                out = compiled(*args, **kwargs)
        except torch.OutOfMemoryError:
            raise
        except Exception as e:
            out = eager(*args, **kwargs)  # raises if the inputs, not the compiler, are at fault
            reason = f"{type(e).__name__}: {first_line(e)[:200]}"
            if self.strict:
                raise CompileFailed(
                    f"torch.compile failed ({reason}); run again with --no-compile"
                ) from None
            self.fell_back = reason
            warnings.warn(
                f"torch.compile failed ({reason}); going on without compiling "
                "(--no-compile skips the attempt)",
                RuntimeWarning,
                stacklevel=2,
            )
            return out
        self.proven.add(shape)
        return out


def cache_root(cache_home: Path | None = None) -> Path:
    """``$XDG_CACHE_HOME/facediff/compile`` (``~/.cache/facediff/compile`` by default), or
    that folder under ``cache_home`` (a process's ``XDG_CACHE_HOME``) when given."""
    base = cache_home or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facediff" / "compile"


def device_slug(device: torch.device) -> str:
    """A folder name for the machine's compile target (GPU model and capability, or CPU)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        name = f"{torch.cuda.get_device_name(index)}-sm{major}{minor}"
    else:
        name = f"cpu-{platform.machine() or 'unknown'}"
    return _SLUG.sub("_", name).strip("_") or "device"


def shape_key(
    model_config: dict[str, Any], dtype: torch.dtype, batch: int | Sequence[int], mode: str
) -> str:
    """A short hash of what a compiled graph depends on: architecture, dtype, batch, mode."""
    batch = batch if isinstance(batch, int) else [int(b) for b in batch]
    blob = json.dumps(
        {"model": model_config, "dtype": str(dtype), "batch": batch, "mode": mode},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _counter(name: str) -> int:
    from torch._dynamo.utils import counters

    return int(counters["inductor"][name])


@dataclass
class CompileCache:
    """The compile cache of one model shape on one machine (see the module docstring)."""

    folder: Path
    key: str
    warnings: list[str] = field(default_factory=list)
    _misses_before: int = 0

    @property
    def artifact(self) -> Path:
        return self.folder / f"{self.key}.bin"

    @property
    def warm(self) -> bool:
        """Whether an artifact for this shape exists (it may still turn out unreadable)."""
        return self.artifact.is_file()

    def activate(self) -> None:
        """Point inductor's caches into :attr:`folder` (unless the user set their own) and
        turn the FX graph and autotuning caches on."""
        import torch._inductor.config as inductor_config
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        # Importing inductor (diffusers does) sets the variable to its default in /tmp.
        current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(self.folder / "inductor")
        inductor_config.fx_graph_cache = True
        inductor_config.autotune_local_cache = True
        self._misses_before = _counter("fxgraph_cache_miss")

    def load(self) -> bool:
        """Load this shape's artifact into inductor's caches; a corrupt or stale one is
        removed with a warning (in :attr:`warnings`). Returns whether one was loaded."""
        path = self.artifact
        if not path.is_file():
            return False
        try:
            data = path.read_bytes()
            info = torch.compiler.load_cache_artifacts(data) if data else None
        except Exception as e:  # torch raises many types for a bad artifact
            info, why = None, f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
        else:
            why = "empty" if not data else "unreadable or from another PyTorch"
        if info is None:
            self.warnings.append(
                f"warning: ignored the compile cache {path} ({why}); compiling from scratch"
            )
            path.unlink(missing_ok=True)
            return False
        return True

    def save(self) -> bool:
        """Write the process's compile artifacts for this shape if it compiled anything new
        (atomically; a failure is a warning). Returns whether a file was written."""
        if _counter("fxgraph_cache_miss") <= self._misses_before and self.artifact.is_file():
            return False
        try:
            saved = torch.compiler.save_cache_artifacts()
        except Exception as e:  # never fatal: the images are what matters
            self.warnings.append(f"warning: could not save the compile cache ({e})")
            return False
        if saved is None:
            return False
        data, _ = saved
        tmp = self.artifact.with_name(f".{self.artifact.name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, self.artifact)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            self.warnings.append(f"warning: could not save the compile cache {self.artifact} ({e})")
            return False
        self._misses_before = _counter("fxgraph_cache_miss")
        return True


def compile_cache(
    model_config: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    batch: int | Sequence[int],
    mode: str = "default",
    root: Path | None = None,
) -> CompileCache:
    """The :class:`CompileCache` of a model shape on this machine (nothing is written yet):
    ``batch`` is the images per batch (training) or the batch sizes the model is called
    with (sampling, :func:`facediff.generation.forward_batches`); ``root`` replaces
    :func:`cache_root`."""
    version = _SLUG.sub("_", f"torch-{torch.__version__}")
    folder = (root or cache_root()) / version / device_slug(device)
    return CompileCache(folder, shape_key(model_config, dtype, batch, mode))
