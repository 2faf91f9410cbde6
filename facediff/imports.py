"""The ``facediff`` command's lean start: what it keeps out of its process, or loads late.

diffusers imports some packages only because they are installed: ``transformers`` (from
its quantizer configs) and ``peft`` (from its hooks) even for a bare ``UNet2DModel``, and
``scipy.stats`` from the DPM-Solver++, UniPC and Euler schedulers (for beta sigmas).
facediff uses none of them. On an H200 machine that had transformers and peft installed
they were about 6.5 s of a 10.6-s import (``python -X importtime``, issue 13); on this
project's 2-core CPU machine, transformers and peft cost 1.2 s and scipy 0.5 s.

:func:`keep_out` marks each of them absent in ``sys.modules`` (Python's documented
switch: an entry of ``None`` makes ``import`` raise ``ModuleNotFoundError`` and
``importlib.util.find_spec`` return ``None``), so every library in the process sees them
as not installed, the configuration facediff's tests run in. Only the command-line
entry point calls it: ``import facediff`` in a notebook leaves them importable.
``FACEDIFF_LEAN_IMPORTS=0`` turns it off.

:func:`lean_start` does that and also trims what diffusers itself imports for a
``UNet2DModel`` (nearly three quarters of facediff's import time after torch on this
project's CPU machine: 2.2 s to 0.6 s), through one import finder for ``diffusers.*`` and
``torch._dynamo`` (:func:`trim_diffusers`; the test suite runs with it too):

* **Family packages on first use.** ``diffusers.models.unets`` and
  ``diffusers.models.transformers`` import every model of their family in their
  ``__init__`` (UNet2DCondition, Dreamlite, 40-odd transformers, and through them
  ``torchvision``, ``sympy`` and ``flex_attention``), though ``unet_2d`` needs only a few of
  their submodules. Their ``__init__`` runs when something first asks the package for a
  name it lacks; importing a submodule does not.
* **The compiler on first use.** diffusers imports ``torch._dynamo`` (1.3 s here) only to
  register its attention classes with ``allow_in_graph`` and to mark some cache hooks
  ``torch.compiler.disable``. While a diffusers module runs, a stand-in ``torch._dynamo``
  takes those down, and the real compiler's import makes them, whoever imports it
  (``torch.compile`` does). Asking the stand-in for anything else, or for one of the
  compiler's submodules, imports the real compiler there and then (:func:`load_dynamo`).
  An eager job never pays for the compiler (loading a run also keeps clear of it:
  ``facediff.loading`` builds the UNet on the meta device without ``torch.nn.init``); a
  compiled one sees what a plain import gives.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

UNUSED = ("transformers", "peft", "scipy")
ENV = "FACEDIFF_LEAN_IMPORTS"
DYNAMO = "torch._dynamo"
LAZY_PACKAGES = ("diffusers.models.unets", "diffusers.models.transformers")


def _lean(environ: Mapping[str, str]) -> bool:
    return environ.get(ENV, "").strip().lower() not in ("0", "false", "no", "off")


def lean_start(environ: Mapping[str, str] = os.environ) -> list[str]:
    """What the command does first: :func:`keep_out` and :func:`trim_diffusers`. Returns
    the names kept out."""
    kept_out = keep_out(environ)
    trim_diffusers(environ)
    return kept_out


def trim_diffusers(environ: Mapping[str, str] = os.environ) -> bool:
    """Put the finder that trims diffusers' imports (see the module's text) first in
    ``sys.meta_path``; whether it is there (not when lean imports are off). Modules imported
    before keep what they imported."""
    if not _lean(environ):
        return False
    if not any(isinstance(finder, _LeanFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LeanFinder())
    return True


def keep_out(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Mark the :data:`UNUSED` packages that are not yet imported as absent; returns
    their names (none when ``FACEDIFF_LEAN_IMPORTS`` is 0, false or no)."""
    if not _lean(environ):
        return []
    kept_out = [name for name in UNUSED if name not in sys.modules]
    for name in kept_out:
        sys.modules[name] = None
    return kept_out


def allow_in_graph(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch._dynamo.allow_in_graph`` once the compiler is imported; until then, note
    ``fn`` for the compiler's import (:func:`_make_deferred`)."""
    if compiler_imported():
        return sys.modules[DYNAMO].allow_in_graph(fn)
    _to_allow.append(fn)
    return fn


def disable(fn: Callable[..., Any] | None = None, recursive: bool = True, **kwargs: Any) -> Any:
    """``torch._dynamo.disable``: ``fn`` wrapped, the real wrapper made when the compiler
    is imported (:func:`_make_deferred`; the first call imports it)."""
    if fn is None:
        return functools.partial(disable, recursive=recursive, **kwargs)
    made: list[Callable[..., Any]] = []

    @functools.wraps(fn)
    def disabled(*args: Any, **kw: Any) -> Any:
        if not made:
            load_dynamo()
        return made[0](*args, **kw)

    _to_disable.append((made, fn, recursive, kwargs))
    if compiler_imported():  # asked of a stand-in someone kept after the real import
        _make_deferred(sys.modules[DYNAMO])
    return disabled


_to_allow: list[Callable[..., Any]] = []  # asked for while the stand-in was in place
_to_disable: list[tuple[list[Callable[..., Any]], Callable[..., Any], bool, dict]] = []


def load_dynamo() -> types.ModuleType:
    """Import the real ``torch._dynamo`` (which makes what the stand-in took down)."""
    if isinstance(sys.modules.get(DYNAMO), _StandIn):
        del sys.modules[DYNAMO]
    import torch._dynamo

    _make_deferred(torch._dynamo)  # made on import already; here for an import before ours
    return torch._dynamo


def _make_deferred(dynamo: types.ModuleType) -> None:
    """The ``allow_in_graph`` registrations and ``disable`` wrappers asked of the stand-in."""
    while _to_allow:
        dynamo.allow_in_graph(_to_allow.pop(0))
    while _to_disable:
        made, fn, recursive, kwargs = _to_disable.pop(0)
        made.append(dynamo.disable(fn, recursive, **kwargs))


def compiler_imported() -> bool:
    """Whether the real ``torch._dynamo`` is imported (not the stand-in, not absent)."""
    module = sys.modules.get(DYNAMO)
    return module is not None and not isinstance(module, _StandIn)


class _StandIn(types.ModuleType):
    """``torch._dynamo`` while a diffusers module runs: it has :func:`allow_in_graph` and
    :func:`disable`; asking it for anything else imports the real module."""

    def __init__(self) -> None:
        super().__init__(DYNAMO)
        self.allow_in_graph = allow_in_graph
        self.disable = disable
        torch = importlib.util.find_spec("torch")
        locations = (torch.submodule_search_locations or []) if torch else []
        self.__path__ = [os.path.join(folder, "_dynamo") for folder in locations]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):  # scans of sys.modules
            raise AttributeError(name)
        return getattr(load_dynamo(), name)


_windows = [0]  # diffusers modules running, one inside the other, with the stand-in


def _run(loader: importlib.abc.Loader, module: types.ModuleType) -> None:
    """``loader.exec_module(module)``, with the stand-in unless the real compiler is in."""
    if compiler_imported():
        loader.exec_module(module)
        return
    if DYNAMO not in sys.modules:  # one stand-in per window, not one per module run
        sys.modules[DYNAMO] = _StandIn()
    stand_in = sys.modules[DYNAMO]
    _windows[0] += 1
    try:
        loader.exec_module(module)
    finally:
        _windows[0] -= 1
        if not _windows[0] and sys.modules.get(DYNAMO) is stand_in:
            del sys.modules[DYNAMO]


class _LazyPackage(types.ModuleType):
    """A package whose ``__init__`` runs when it is first asked for a name it lacks."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name != "__all__":
            raise AttributeError(name)
        self.__class__ = types.ModuleType
        _run(self.__spec__.loader, self)
        return getattr(self, name)


def _make_lazy(loader: importlib.abc.Loader, module: types.ModuleType) -> None:
    module.__class__ = _LazyPackage  # runs ``loader`` (its __spec__.loader) on first use


def _run_compiler(loader: importlib.abc.Loader, module: types.ModuleType) -> None:
    loader.exec_module(module)  # the real torch._dynamo: then what the stand-in took down
    _make_deferred(module)


class _LeanLoader(importlib.abc.Loader):
    """A module's loader with ``run(loader, module)`` in place of its ``exec_module``:
    :func:`_run` (a diffusers module), :func:`_make_lazy` (a family package) or
    :func:`_run_compiler` (``torch._dynamo``)."""

    def __init__(self, loader: Any, run: Callable[[Any, types.ModuleType], None]) -> None:
        self.loader, self.run = loader, run

    def create_module(self, spec: Any) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self.loader  # no trace of this wrapper once loaded
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.run(self.loader, module)


class _FromTheCompiler(importlib.abc.Loader):
    """A compiler submodule asked for under the stand-in: import the real compiler (which
    imports most of its submodules) and hand over its module, so there is one copy."""

    def create_module(self, spec: Any) -> types.ModuleType:
        load_dynamo()  # the stand-in is gone: the import below finds the real one
        module = importlib.import_module(spec.name)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self.spec  # the import system set this loader's spec on it


class _LeanFinder(importlib.abc.MetaPathFinder):
    """Finds diffusers' modules and ``torch._dynamo`` as the finders after it would, with
    :class:`_LeanLoader` around their loaders; a compiler submodule asked for under the
    stand-in comes from the real compiler."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name.startswith(DYNAMO + ".") and isinstance(sys.modules.get(DYNAMO), _StandIn):
            return importlib.util.spec_from_loader(name, _FromTheCompiler())
        if name != DYNAMO and name.partition(".")[0] != "diffusers":
            return None
        spec = self._others(name, path, target)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        if name == DYNAMO:
            spec.loader = _LeanLoader(spec.loader, _run_compiler)
        elif name in LAZY_PACKAGES and spec.submodule_search_locations is not None:
            spec.loader = _LeanLoader(spec.loader, _make_lazy)
        elif not compiler_imported():
            spec.loader = _LeanLoader(spec.loader, _run)
        return spec

    def _others(self, name: str, path: Any, target: Any) -> Any:
        """The spec the finders after this one give."""
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find and finder is not self else None
            if spec is not None:
                return spec
        return None
