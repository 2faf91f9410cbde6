"""`facediff grid`: labelled rows x seeds, strips, from a run or a sample folder."""

from __future__ import annotations

import pytest
from PIL import Image
from sampling_helpers import error_lines, invoke, make_run

from facediff.categories import DEFAULT_CATEGORIES
from facediff.errors import FacediffError
from facediff.grids import compose_grid, strip_mixes

FAST = ["--steps", "2", "--device", "cpu"]


def _tiles(n: int, size: int = 16) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), (20 * i, 0, 0)) for i in range(n)]


def test_compose_grid_size_follows_rows_and_columns():
    base = compose_grid([("I", _tiles(3)), ("OIE", _tiles(3))], column_labels=["a", "b", "c"])
    wider = compose_grid([("I", _tiles(4)), ("OIE", _tiles(4))], column_labels=["a", "b", "c"])
    taller = compose_grid(
        [("I", _tiles(3)), ("OIE", _tiles(3)), ("E", _tiles(3))], column_labels=["a", "b", "c"]
    )
    cell = 64 + 2  # 16 px images are enlarged 4x; 2 px gaps
    assert wider.size == (base.width + cell, base.height)
    assert taller.size == (base.width, base.height + cell)
    no_header = compose_grid([("I", _tiles(3)), ("OIE", _tiles(3))])
    assert no_header.width == base.width and no_header.height < base.height
    ragged = compose_grid([("I", _tiles(2)), ("strip", _tiles(5))])
    assert ragged.width == compose_grid([("I", _tiles(5)), ("strip", _tiles(5))]).width
    with pytest.raises(FacediffError):
        compose_grid([])


def test_strip_weights_sweep_linearly():
    mixes = strip_mixes("O", "I", 5, DEFAULT_CATEGORIES)
    assert [m.label for m in mixes] == ["O", "O75I25", "OI", "O25I75", "I"]
    two = strip_mixes("OI", "E", 3, DEFAULT_CATEGORIES)
    assert two[1].to_dict(DEFAULT_CATEGORIES)["weights"] == pytest.approx(
        {"O": 0.25, "I": 0.25, "E": 0.5}
    )
    with pytest.raises(FacediffError, match="at least 2"):
        strip_mixes("O", "I", 1, DEFAULT_CATEGORIES)


def test_grid_from_run_and_from_samples(tmp_path):
    run = make_run(tmp_path / "run")
    r = invoke(["grid", run, "--seeds", "2", "--strip", "O", "E", "--strip-steps", "3", *FAST])
    assert r.exit_code == 0, r.output
    with Image.open(run / "grid.png") as im:
        size = im.size
    # 7 rows of mixes + 1 strip row; 3 strip cells is the widest row.
    ref = compose_grid(
        [(label, _tiles(2)) for label in ["I", "O", "E", "OI", "OE", "IE", "OIE"]]
        + [("O->E (seed 0)", _tiles(3))],
        column_labels=["seed 0", "seed 1"],
    )
    assert size == ref.size
    r = invoke(["grid", run, *FAST])
    assert r.exit_code == 1
    assert error_lines(r) == [
        f"facediff: error: {run / 'grid.png'} already exists; use --force to overwrite"
    ]

    samples = tmp_path / "samples"
    assert (
        invoke(
            ["sample", run, "--mix", "OI", "--mix", "E", "-n", "3", "--out", samples, *FAST]
        ).exit_code
        == 0
    )
    out = tmp_path / "g.png"
    r = invoke(["grid", "--from-samples", samples, "--seeds", "2", "--out", out])
    assert r.exit_code == 0, r.output
    with Image.open(out) as im:
        assert (
            im.size
            == compose_grid(
                [("E", _tiles(2)), ("OI", _tiles(2))],
                column_labels=["seed 0", "seed 1"],
            ).size
        )
    r = invoke(["grid", "--from-samples", tmp_path / "none", "--out", tmp_path / "n.png"])
    assert r.exit_code == 1 and "sample folder not found" in error_lines(r)[0]


def test_an_out_path_no_image_can_be_written_to_is_refused_before_sampling(tmp_path, monkeypatch):
    import facediff.grids as grids

    run = make_run(tmp_path / "run")
    (tmp_path / "a folder").mkdir()

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before checking --out")

    monkeypatch.setattr(grids, "rows_from_run", no_sampling)
    for out, why in (
        ("mygrid", "give an image file name ending in .png (or .jpg, .webp)"),
        ("g.xyz", "give an image file name ending in .png (or .jpg, .webp)"),
        ("a folder", "it is a folder; give the image file to write"),
    ):
        path = tmp_path / out
        for force in ([], ["--force"]):
            r = invoke(["grid", run, "--out", path, *force, *FAST])
            assert r.exit_code == 2, r.output
            assert error_lines(r) == [f"facediff: error: invalid --out {str(path)!r}: {why}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a folder", "run"]


def test_force_replaces_a_linked_grid_and_never_writes_through_the_link(tmp_path):
    run = make_run(tmp_path / "run")
    victim = tmp_path / "victim.txt"
    victim.write_text("a file of the user's")
    link = tmp_path / "g.png"
    link.symlink_to(victim)
    r = invoke(["grid", run, "--out", link, "--force", "--seeds", "1", "-c", "I", *FAST])
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "a file of the user's"
    assert not link.is_symlink()
    with Image.open(link) as im:
        assert im.format == "PNG"


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("from-samples")
    run = make_run(tmp / "run")
    samples = tmp / "samples"
    args = ["sample", run, "-c", "E", "--mix", "OI", "--mix", "O:0.7,I:0.3", "-n", "2"]
    args += ["--out", samples]
    assert invoke([*args, *FAST]).exit_code == 0
    return samples


def _read(samples, label):
    return [Image.open(samples / label / f"{label}_{s}.png").convert("RGB") for s in (0, 1)]


@pytest.mark.parametrize("spelling", [["-c", "e", "--mix", "I+O"], ["-c", "E", "--mix", "OI"]])
def test_a_grid_from_samples_shows_the_rows_named(sampled, tmp_path, spelling):
    out = tmp_path / "g.png"
    r = invoke(["grid", "--from-samples", sampled, "--seeds", "2", "--out", out, *spelling])
    assert r.exit_code == 0, r.output
    want = compose_grid(
        [("E", _read(sampled, "E")), ("OI", _read(sampled, "OI"))],
        column_labels=["seed 0", "seed 1"],
    )
    with Image.open(out) as im:
        assert im.size == want.size
        assert list(im.convert("RGB").getdata()) == list(want.getdata())


def test_a_grid_from_samples_refuses_a_row_it_does_not_have(sampled, tmp_path):
    out = tmp_path / "g.png"
    r = invoke(["grid", "--from-samples", sampled, "--mix", "O:0.6,I:0.4", "--out", out])
    assert r.exit_code == 1
    (line,) = error_lines(r)
    assert line.endswith("'O:0.6,I:0.4' in " + f"{sampled}; its rows are E, O70I30, OI")
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--gender", "f"], "--gender"),
        (["--strip", "O", "I"], "--strip"),
        # settings that change the images: read from a folder, they were silently ignored
        (["--steps", "3"], "--steps"),
        (["--guidance", "7"], "--guidance"),
        (["--seed", "5"], "--seed"),
        (["--no-ema"], "--no-ema"),
        (["--checkpoint", "10"], "--checkpoint"),
    ],
)
def test_model_options_are_refused_with_a_sample_folder(sampled, tmp_path, option, named):
    out = tmp_path / "g.png"
    r = invoke(["grid", "--from-samples", sampled, *option, "--out", out])
    assert r.exit_code == 2
    assert error_lines(r) == [
        f"facediff: error: {named} needs a model; it cannot be used with --from-samples"
    ]


def test_how_fast_options_are_accepted_with_a_sample_folder(sampled, tmp_path):
    """The device, precision and batch size change no image: a script that passes them to
    every command still makes its grid."""
    out = tmp_path / "g.png"
    args = ["--device", "cpu", "--precision", "fp32", "--batch-size", "4", "--no-compile"]
    r = invoke(["grid", "--from-samples", sampled, *args, "--out", out])
    assert r.exit_code == 0, r.output
    assert out.is_file()


def test_a_grid_too_big_to_open_is_refused_before_sampling(tmp_path, monkeypatch):
    import facediff.grids as grids

    run = make_run(tmp_path / "run")

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled a grid that is too big")

    fits = invoke(["grid", run, "--seeds", "3", "-c", "O", "--out", tmp_path / "g.png", *FAST])
    assert fits.exit_code == 0, fits.output
    monkeypatch.setattr(grids, "generate", no_sampling)
    for option in (["--seeds", "100000"], ["--strip-steps", "100000"]):
        r = invoke(["grid", run, *option, "--out", tmp_path / "big.png", *FAST])
        assert r.exit_code == 2, r.output
        (line,) = error_lines(r)
        assert line.startswith(f"facediff: error: {option[0]} 100000: the grid would be")
    assert not (tmp_path / "big.png").exists()
