"""``facediff train``: a class-conditional diffusion model from a prepared dataset.

Modules: :mod:`~facediff.training.loop` (:func:`train`, the loop),
:mod:`~facediff.training.setup` (config and resume, model and optimizer, restore),
:mod:`~facediff.training.step` (one step, whose update :mod:`facediff.cuda_graphs` can
replay), :mod:`~facediff.training.periodic` (logs, checkpoints, previews) and
:mod:`~facediff.training.state` (what they share).

The loop (:func:`run_loop`) is an orchestration of small steps — :func:`train_step`,
``EMA.update``, :func:`maybe_log`, :func:`maybe_checkpoint` and the preview —
in the manner of improved-diffusion's ``run_loop``.

Reproducibility and exact resume: every random draw of a step (timesteps, noise, label
dropout, flips) comes from a generator reseeded with ``(seed, rank, step)``, the batch
indices follow from ``images_seen`` (:mod:`facediff.batches`), the learning rate and
EMA decay from ``step``; the optimizer and grad-scaler states and the global torch RNG
(used only by dropout layers) are checkpointed. So "N steps, stop, resume, N more" gives
bit-identical weights to "2N steps" on the CPU.

Class conditioning with classifier-free guidance in mind: labels are replaced by the
null class with probability ``cond_drop`` (Ho & Salimans 2022, arXiv:2207.12598). Data
with attributes (gender, age bucket…) trains labels N×(1+A) whose embeddings are summed
(:class:`facediff.guidance.SummedEmbedding`); each attribute column is replaced by its
own null independently (``attribute_dropout``, default ``cond_drop``), and always when
the value is unknown, so each attribute can be guided or left free when sampling.
"""

from facediff.training.loop import run_loop, train
from facediff.training.setup import build_parts, resume_config, saved_train_config
from facediff.training.state import Loop, Setup, TrainResult
from facediff.training.step import advance

__all__ = [
    "Loop",
    "Setup",
    "TrainResult",
    "advance",
    "build_parts",
    "resume_config",
    "run_loop",
    "saved_train_config",
    "train",
]
