"""Training on attribute labels (issue 14): runs record their attribute set, resume refuses
another, each attribute drops to its own null at its own rate, runs without attributes
train exactly as before, and loaded models sum the attribute embeddings."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import (
    ATTRIBUTES,
    attribute_blocks_dataset,
    attribute_labels,
    blocks_dataset,
    tiny,
)
from typer.testing import CliRunner

from facediff.attributes import AttributeSet, age_attribute, gender_attribute
from facediff.categories import DEFAULT_CATEGORIES
from facediff.checkpoint import read_state
from facediff.cli import app
from facediff.config import TrainConfig, attribute_drop_rates, parse_attribute_dropout
from facediff.dataset import PreparedData, load_prepared
from facediff.errors import CheckpointError, ConfigError
from facediff.guidance import SummedEmbedding
from facediff.loading import load_for_inference
from facediff.objective import add_noise, make_schedule, target
from facediff.training import step as step_module
from facediff.training import train
from facediff.training.step import make_batch

FAST = ["--preset", "tiny", "--batch-size", "4", "--preview-every", "0", "--device", "cpu"]


def _one_line_error(result, fragment: str) -> str:
    out = result.output
    assert result.exit_code != 0, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.startswith("facediff: error:")]
    assert len(lines) == 1, out
    assert fragment in lines[0], lines[0]
    return lines[0]


def _weights(ckpt) -> dict[str, torch.Tensor]:
    return {
        **load_file(str(ckpt / "model.safetensors")),
        **{f"ema.{k}": v for k, v in load_file(str(ckpt / "ema.safetensors")).items()},
    }


def _assert_same_weights(a, b) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ------------------------------------------------------------------ runs and resume


def test_run_records_attributes_and_loads_a_summed_embedding(tmp_path):
    data = attribute_blocks_dataset(tmp_path / "data")
    run = tmp_path / "run"
    result = train(data, run, tiny(max_steps=2))
    config = json.loads((run / "config.json").read_text())
    state = read_state(result.checkpoint)
    for record in (config, state):
        assert record["attributes"] == ATTRIBUTES.to_list()
        assert record["model"]["attribute_sizes"] == [2, 3]
    # 3 categories + ∅, 2 genders + ∅, 3 age buckets + ∅
    assert load_file(str(result.checkpoint / "ema.safetensors"))["class_embedding.weight"].shape[
        0
    ] == (4 + 3 + 4)

    assert load_for_inference(result.checkpoint).attributes == ATTRIBUTES  # a checkpoint
    loaded = load_for_inference(run)
    assert loaded.attributes == ATTRIBUTES
    emb = loaded.unet.class_embedding
    assert isinstance(emb, SummedEmbedding)
    w = emb.weight
    labels = torch.tensor([[1, 0, 2], [3, 2, 3]])  # (category, gender, age); ∅ = last
    want = torch.stack([w[1] + w[4 + 0] + w[4 + 3 + 2], w[3] + w[4 + 2] + w[4 + 3 + 3]])
    assert torch.allclose(emb(labels), want)

    # The attribute columns reach the output: a change of gender or age changes it.
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        outs = [
            loaded.unet(x, t, torch.tensor([row])).sample
            for row in ([0, 0, 1], [0, 1, 1], [0, 0, 2])
        ]
    assert not torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_resume_refuses_another_attribute_set(tmp_path):
    data = attribute_blocks_dataset(tmp_path / "data")
    run = tmp_path / "run"
    train(data, run, tiny(max_steps=1))
    n = 3 * 4
    other_edges = attribute_blocks_dataset(
        tmp_path / "decades",
        attributes=AttributeSet((gender_attribute(), age_attribute((10, 20)))),
        attribute_labels=attribute_labels(n),
    )
    only_gender = attribute_blocks_dataset(
        tmp_path / "gender",
        attributes=AttributeSet((gender_attribute(),)),
        attribute_labels=attribute_labels(n)[:, :1],
    )
    none = blocks_dataset(tmp_path / "none")
    for other in (other_edges, only_gender, none):
        with pytest.raises(CheckpointError, match="trained with attributes"):
            train(other, run, tiny(max_steps=2))
    line = _one_line_error(
        CliRunner().invoke(app, ["train", str(none), "--out", str(run), "--max-steps", "2"]),
        "attributes",
    )
    assert "gender (male, female); age (0-29, 30-59, 60+)" in line and "has none" in line

    # A run trained without attributes refuses data that has them.
    plain = tmp_path / "plain"
    train(none, plain, tiny(max_steps=1))
    with pytest.raises(CheckpointError, match="trained with attributes none"):
        train(data, plain, tiny(max_steps=2))


def test_stop_and_resume_is_bit_exact_with_attributes(tmp_path):
    data = attribute_blocks_dataset(tmp_path / "data")  # 12 images: batches span epochs
    cfg = tiny(cond_drop=0.3, attribute_dropout={"gender": 0.5}, log_every=1, balance=True)
    straight = train(data, tmp_path / "a", dataclasses.replace(cfg, max_steps=6))
    train(data, tmp_path / "b", dataclasses.replace(cfg, max_steps=3))
    resumed = train(data, tmp_path / "b", None, max_steps=6)  # the run's own config
    assert straight.step == resumed.step == 6
    _assert_same_weights(straight.checkpoint, resumed.checkpoint)
    assert read_state(resumed.checkpoint)["train"]["attribute_dropout"] == {"gender": 0.5}


# ------------------------------------------------------------------ dropout


def _prepared(n: int, attrs: torch.Tensor | None) -> PreparedData:
    g = torch.Generator().manual_seed(1)
    return PreparedData(
        images=torch.zeros(n, 3, 2, 2, dtype=torch.uint8),
        labels=torch.randint(0, 3, (n,), generator=g),
        categories=DEFAULT_CATEGORIES,
        size=2,
        manifest={},
        path=None,  # type: ignore[arg-type]
        attributes=ATTRIBUTES if attrs is not None else AttributeSet(),
        attribute_labels=attrs,
    )


def _rates(labels: torch.Tensor, known: torch.Tensor) -> list[float]:
    nulls = torch.tensor([3, *ATTRIBUTES.nulls()])
    return [float((labels[known[:, j], j] == nulls[j]).float().mean()) for j in range(3)]


def test_each_attribute_drops_to_its_own_null_at_its_own_rate():
    n = 20_000
    attrs = attribute_labels(n, seed=3, unknown=0.2)
    data = _prepared(n, attrs)
    idx = torch.arange(n)
    cfg = TrainConfig(cond_drop=0.1, attribute_dropout={"gender": 0.5}, flip=False)
    _, labels = make_batch(data, idx, torch.Generator().manual_seed(0), cfg)
    assert labels.shape == (n, 3) and labels.dtype == torch.int64
    known = torch.cat([torch.ones(n, 1, dtype=torch.bool), attrs >= 0], 1)
    # Unknown values are always their attribute's null.
    assert (
        labels[:, 1:][attrs < 0] == torch.tensor(ATTRIBUTES.nulls()).expand(n, 2)[attrs < 0]
    ).all()
    # Known values are kept or dropped, never changed into another value.
    kept = labels[:, 1:] != torch.tensor(ATTRIBUTES.nulls())
    assert torch.equal(labels[:, 1:][kept], attrs[kept])
    assert torch.equal(labels[:, 0][labels[:, 0] != 3], data.labels[labels[:, 0] != 3])
    category, gender, age = _rates(labels, known)
    tol = 4 * (0.25 / n) ** 0.5 / 0.8**0.5  # four standard errors at worst (p = 0.5)
    assert abs(category - 0.1) < tol and abs(gender - 0.5) < tol and abs(age - 0.1) < tol
    # Independent columns: both attributes dropped ≈ the product of the rates.
    both = known[:, 1] & known[:, 2]
    nulls = torch.tensor(ATTRIBUTES.nulls())
    joint = float(((labels[both, 1:] == nulls).all(1)).float().mean())
    assert abs(joint - 0.05) < tol

    # Default (None): every attribute at the category rate; one rate for all.
    for value, want in ((None, 0.3), (0.2, 0.2)):
        cfg = TrainConfig(cond_drop=0.3, attribute_dropout=value)
        _, labels = make_batch(data, idx, torch.Generator().manual_seed(1), cfg)
        rates = _rates(labels, known)
        assert abs(rates[0] - 0.3) < tol, rates
        assert all(abs(r - want) < tol for r in rates[1:]), rates


def test_attribute_dropout_is_validated():
    with pytest.raises(ConfigError, match="attribute dropout"):
        TrainConfig(attribute_dropout=1.0)
    with pytest.raises(ConfigError, match="attribute dropout"):
        TrainConfig(attribute_dropout={"gender": -0.1})
    assert parse_attribute_dropout("0.25") == 0.25
    assert parse_attribute_dropout("gender=0.3, age=0.1") == {"gender": 0.3, "age": 0.1}
    for bad in ("lots", "gender", "gender=", "gender=0.1,gender=0.2", "=0.2"):
        with pytest.raises(ConfigError, match="attribute dropout"):
            TrainConfig(attribute_dropout=parse_attribute_dropout(bad))
    cfg = TrainConfig(attribute_dropout={"colour": 0.2})
    with pytest.raises(ConfigError, match="no attribute 'colour'"):
        attribute_drop_rates(cfg, ATTRIBUTES.names)


def test_cli_attribute_dropout_recorded_resumed_and_checked(tmp_path):
    data = attribute_blocks_dataset(tmp_path / "data")
    run = tmp_path / "run"
    cli = CliRunner()
    args = ["train", str(data), "--out", str(run), *FAST]
    first = cli.invoke(app, [*args, "--max-steps", "1", "--attribute-dropout", "gender=0.4"])
    assert first.exit_code == 0, first.output
    assert "conditioning on attributes gender (male, female); age (0-29, 30-59, 60+)" in (
        first.output
    )
    again = cli.invoke(app, ["train", str(data), "--out", str(run), "--max-steps", "2"])
    assert again.exit_code == 0, again.output
    state = read_state(run / "checkpoints" / "step-00000002")
    assert state["train"]["attribute_dropout"] == {"gender": 0.4}
    _one_line_error(cli.invoke(app, [*args, "--attribute-dropout", "often"]), "--attribute-dropout")
    _one_line_error(cli.invoke(app, [*args, "--attribute-dropout", "1.5"]), "--attribute-dropout")
    line = _one_line_error(
        cli.invoke(app, [*args, "--max-steps", "3", "--attribute-dropout", "hair=0.2"]),
        "--attribute-dropout",
    )
    assert "gender, age" in line
    plain = blocks_dataset(tmp_path / "plain")
    args = ["train", str(plain), "--out", str(tmp_path / "plain-run"), *FAST, "--max-steps", "1"]
    noted = cli.invoke(app, [*args, "--attribute-dropout", "0.2"])
    assert noted.exit_code == 0, noted.output
    assert "has no attribute labels: the attribute dropout has no effect" in noted.output


# ------------------------------------------------------------------ runs without attributes


def _old_make_batch(data, idx, g, cfg):
    """make_batch as it was before attributes (verbatim)."""
    x0 = data.images[idx].float().div_(127.5).sub_(1.0)
    n, dev = x0.shape[0], x0.device
    flip = torch.rand(n, generator=g, device=dev) < (0.5 if cfg.flip else 0.0)
    x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(3), x0)
    drop = torch.rand(n, generator=g, device=dev) < cfg.cond_drop
    labels = torch.where(drop, len(data.categories), data.labels[idx])
    return x0, labels


def test_a_run_without_attributes_trains_exactly_as_before(tmp_path, monkeypatch):
    data = blocks_dataset(tmp_path / "data")
    prepared = load_prepared(data)
    assert prepared.attribute_labels is None and not prepared.attributes
    idx = torch.tensor([0, 5, 7, 11, 3])
    cfg = tiny(cond_drop=0.5)
    new = make_batch(prepared, idx, torch.Generator().manual_seed(4), cfg)
    old = _old_make_batch(prepared, idx, torch.Generator().manual_seed(4), cfg)
    assert new[1].ndim == 1 and torch.equal(new[0], old[0]) and torch.equal(new[1], old[1])

    cfg = tiny(max_steps=3, cond_drop=0.3, log_every=1)
    now = train(data, tmp_path / "now", cfg)
    monkeypatch.setattr(step_module, "make_batch", _old_make_batch)
    before = train(data, tmp_path / "before", cfg)
    _assert_same_weights(now.checkpoint, before.checkpoint)
    state = read_state(now.checkpoint)
    assert state["attributes"] == [] and state["model"]["attribute_sizes"] == []
    loaded = load_for_inference(tmp_path / "now")
    assert type(loaded.unet.class_embedding) is torch.nn.Embedding
    assert loaded.attributes == AttributeSet()


def test_runs_from_before_attributes_still_load_and_resume(tmp_path):
    data = blocks_dataset(tmp_path / "data")
    run = tmp_path / "run"
    result = train(data, run, tiny(max_steps=1))
    path = result.checkpoint / "state.json"
    state = json.loads(path.read_text())
    del state["attributes"], state["model"]["attribute_sizes"], state["train"]["attribute_dropout"]
    path.write_text(json.dumps(state))
    assert load_for_inference(run).attributes == AttributeSet()
    assert train(data, run, None, max_steps=2).step == 2


# ------------------------------------------------------------------ exports


def test_export_of_an_attribute_run_loads_with_its_attributes(tmp_path):
    from facediff.exporting import EXPORT_INFO_FILE, export

    data = attribute_blocks_dataset(tmp_path / "data")
    run = tmp_path / "run"
    train(data, run, tiny(max_steps=1))
    out = tmp_path / "export"
    export(run, out)
    info_path = out / EXPORT_INFO_FILE
    info = json.loads(info_path.read_text())
    assert info["attributes"] == ATTRIBUTES.to_list()
    exported, original = load_for_inference(out), load_for_inference(run)
    assert exported.attributes == ATTRIBUTES
    assert isinstance(exported.unet.class_embedding, SummedEmbedding)
    labels = torch.tensor([[0, 1, 2], [2, 2, 0]])
    assert torch.equal(exported.unet.class_embedding(labels), original.unet.class_embedding(labels))
    # Without the list the summed table cannot be read: refused, not guessed.
    del info["attributes"]
    info_path.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="attribute sizes"):
        load_for_inference(out)

    # An export of an older facediff (no list, no attributes) loads with none.
    plain = tmp_path / "plain"
    train(blocks_dataset(tmp_path / "plain-data"), plain, tiny(max_steps=1))
    export(plain, tmp_path / "plain-export")
    info_path = tmp_path / "plain-export" / EXPORT_INFO_FILE
    info = json.loads(info_path.read_text())
    del info["attributes"], info["model"]["attribute_sizes"]
    info_path.write_text(json.dumps(info))
    old = load_for_inference(tmp_path / "plain-export")
    assert old.attributes == AttributeSet()
    assert type(old.unet.class_embedding) is torch.nn.Embedding


# ------------------------------------------------------------------ previews


def test_previews_of_an_attribute_run_leave_every_attribute_free(tmp_path, monkeypatch):
    seen = []
    forward = SummedEmbedding.forward

    def recording(self, labels):
        seen.append(labels.clone())
        return forward(self, labels)

    data = attribute_blocks_dataset(tmp_path / "data")
    run = tmp_path / "run"
    cfg = tiny(max_steps=1, preview_every=1, preview_steps=2, preview_columns=2, cond_drop=0.0)
    monkeypatch.setattr(SummedEmbedding, "forward", recording)
    train(data, run, cfg)
    assert (run / "previews" / "step-00000001.png").is_file()
    batch, *sampling = seen  # the training step's batch, then the preview's calls
    assert batch.shape == (8, 3)
    rows = torch.cat(sampling)
    assert rows.shape[1] == 3  # category, gender, age: never bare category rows
    assert set(rows[:, 0].tolist()) == {0, 1, 2, 3}  # the categories and ∅ (guidance)
    assert (rows[:, 1:] == torch.tensor(ATTRIBUTES.nulls())).all()


@pytest.mark.slow
def test_the_model_learns_the_attributes(tmp_path):
    n = 3 * 16
    data = attribute_blocks_dataset(
        tmp_path / "data", per_category=16, attribute_labels=attribute_labels(n, unknown=0.0)
    )
    cfg = tiny(max_steps=60, batch_size=16, lr=1e-3, lr_warmup_steps=5, log_every=10)
    train(data, tmp_path / "run", cfg)
    model = load_for_inference(tmp_path / "run", use_ema=False)
    prepared = load_prepared(data)
    schedule = make_schedule(model.scheduler_config, torch.device("cpu"))
    x0 = prepared.images.float() / 127.5 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((n,), 600)
    x_t = add_noise(schedule, x0, noise, t)
    want = target(schedule, x0, noise, t)
    attrs = prepared.attribute_labels
    own = torch.cat([prepared.labels.unsqueeze(1), attrs], 1)
    wrong_gender = own.clone()
    wrong_gender[:, 1] = 1 - attrs[:, 0]
    wrong_age = own.clone()
    wrong_age[:, 2] = (attrs[:, 1] + 1) % 3
    errors = []
    with torch.no_grad():
        for labels in (own, wrong_gender, wrong_age):
            out = model.unet(x_t, t, labels).sample
            errors.append(float(((out - want) ** 2).mean()))
    assert errors[0] < min(errors[1:]), errors
