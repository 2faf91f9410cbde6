"""Training core: exact resume, crash safety, learning, divergence, DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import blocks_dataset, faces_dataset, tiny

from facediff.checkpoint import list_checkpoints, load_training_state
from facediff.dataset import load_prepared
from facediff.errors import TrainingDiverged
from facediff.loading import load_for_inference
from facediff.objective import add_noise, make_schedule
from facediff.training import train


def _ckpt_tensors(ckpt):
    model = load_file(str(ckpt / "model.safetensors"))
    ema = load_file(str(ckpt / "ema.safetensors"))
    opt = load_training_state(ckpt)["optimizer"]["state"]
    return model, ema, opt


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _assert_same(a[k], b[k])
        else:
            assert torch.equal(a[k], b[k]), k


def test_resumed_equals_uninterrupted(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)  # 12 images: batches span epochs
    cfg = tiny(cond_drop=0.3, log_every=1, balance=True)
    straight = train(data, tmp_path / "a", tiny(**{**cfg.__dict__, "max_steps": 6}))
    first = train(data, tmp_path / "b", tiny(**{**cfg.__dict__, "max_steps": 3}))
    messages = []
    resumed = train(
        data,
        tmp_path / "b",
        tiny(**{**cfg.__dict__, "max_steps": 6}),
        progress=lambda e: messages.append(e.message),
    )
    assert first.step == 3 and straight.step == resumed.step == 6
    assert "resuming from step 3" in messages
    assert resumed.images_seen == straight.images_seen == 48
    for x, y in zip(_ckpt_tensors(straight.checkpoint), _ckpt_tensors(resumed.checkpoint)):
        _assert_same(x, y)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_run_folder_contents(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    result = train(
        data,
        tmp_path / "run",
        tiny(max_steps=4, checkpoint_every=2, keep=1, preview_every=2, log_every=1),
    )
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["num_categories"] == 3
    assert config["scheduler"]["prediction_type"] == "v_prediction"  # the default
    assert config["data"]["fingerprint"]
    assert [s for s, _ in list_checkpoints(run)] == [4]  # pruned to --keep 1
    state = json.loads((result.checkpoint / "state.json").read_text())
    for key in (
        "step",
        "epoch",
        "images_seen",
        "model",
        "categories",
        "scheduler",
        "train",
        "data",
    ):
        assert key in state
    assert sorted(p.name for p in (run / "previews").iterdir()) == [
        "step-00000002.png",
        "step-00000004.png",
    ]
    assert (run / "loss.png").is_file()


def test_incomplete_checkpoints_are_ignored(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    run = tmp_path / "run"
    train(data, run, tiny(max_steps=2, checkpoint_every=1, prediction_type="v_prediction"))
    good = run / "checkpoints" / "step-00000002"
    shutil.copytree(good, run / "checkpoints" / ".tmp-step-00000003")
    broken = run / "checkpoints" / "step-00000004"
    shutil.copytree(good, broken)
    (broken / "ema.safetensors").unlink()
    messages = []
    result = train(data, run, None, progress=lambda e: messages.append(e.message))  # saved config
    assert "resuming from step 2" in messages
    assert result.step == 2  # the saved max_steps is reached: nothing to do
    result = train(
        data,
        run,
        tiny(max_steps=3, prediction_type="v_prediction"),
        progress=lambda e: messages.append(e.message),
    )
    assert result.step == 3
    state = json.loads((result.checkpoint / "state.json").read_text())
    assert state["scheduler"]["prediction_type"] == "v_prediction"


@pytest.mark.slow
def test_loss_falls_and_labels_matter(tmp_path):
    data = faces_dataset(tmp_path / "data", per_category=16, size=16)
    cfg = tiny(max_steps=60, batch_size=16, lr=1e-3, lr_warmup_steps=5, log_every=10)
    train(data, tmp_path / "run", cfg)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").open()]
    assert losses[-1] < 0.5 * losses[0], losses

    # Conditional: noisy faces are denoised better with their own label than another's.
    model = load_for_inference(tmp_path / "run", use_ema=False)
    prepared = load_prepared(data)
    schedule = make_schedule(model.scheduler_config, torch.device("cpu"))
    x0 = prepared.images.float() / 127.5 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((len(x0),), 600)
    x_t = add_noise(schedule, x0, noise, t)
    errors = []
    with torch.no_grad():
        for shift in range(3):
            out = model.unet(x_t, t, (prepared.labels + shift) % 3).sample
            errors.append(float(((out - noise) ** 2).mean()))
    assert errors[0] < min(errors[1:]), errors


def test_divergence_stops_and_keeps_good_checkpoint(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    run = tmp_path / "run"
    cfg = tiny(
        max_steps=50,
        lr=1e30,
        lr_warmup_steps=0,
        checkpoint_every=1,
        log_every=1,
        min_snr_gamma=None,
    )
    with pytest.raises(TrainingDiverged, match=r"step \d+"):
        train(data, run, cfg)
    for _, ckpt in list_checkpoints(run):
        for t in load_file(str(ckpt / "model.safetensors")).values():
            assert torch.isfinite(t).all()


def test_ddp_two_processes_gloo_and_resume(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def torchrun(max_steps: int) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "facediff", "train", str(data), "--out", str(run),
               "--preset", "tiny", "--max-steps", str(max_steps), "--batch-size", "4",
               "--checkpoint-every", "2", "--preview-every", "0", "--device", "cpu"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    torchrun(2)
    assert [s for s, _ in list_checkpoints(run)] == [2]
    proc = torchrun(3)
    assert proc.stderr.count("resuming from step 2") == 1  # rank 0 alone reports
    assert [s for s, _ in list_checkpoints(run)] == [2, 3]
    state = json.loads((run / "checkpoints" / "step-00000003" / "state.json").read_text())
    assert state["images_seen"] == 3 * 8 and state["world_size"] == 2
    assert not list((run / "checkpoints").glob(".tmp-*"))
