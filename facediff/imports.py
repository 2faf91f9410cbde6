"""Packages the ``facediff`` command keeps out of its process, for a faster start.

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
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

UNUSED = ("transformers", "peft", "scipy")
ENV = "FACEDIFF_LEAN_IMPORTS"


def keep_out(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Mark the :data:`UNUSED` packages that are not yet imported as absent; returns
    their names (none when ``FACEDIFF_LEAN_IMPORTS`` is 0, false or no)."""
    if environ.get(ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return []
    kept_out = [name for name in UNUSED if name not in sys.modules]
    for name in kept_out:
        sys.modules[name] = None
    return kept_out
