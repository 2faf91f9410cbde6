"""`prepare --attributes`: UTKFace names or a CSV → per-image attribute labels, unknown
values with their reasons, counts per category × value, in all three layouts."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from sampling_helpers import invoke

from facediff.attributes import AttributeSet, age_attribute, gender_attribute
from facediff.config import PACKED_FILE
from facediff.dataset import load_prepared
from facediff.errors import FacediffError, UsageError
from facediff.preparation import prepare

NOT_UTK = "file name is not [age]_[gender]_[race]_[date]"


def _face(path, k: int) -> None:
    """A distinct 20×20 image (no two share bytes, so none is a duplicate)."""
    pixels = np.random.default_rng(k).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _raw(root, names):
    for k, name in enumerate(names):
        _face(root / name, k)
    return root


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def _rows(out):
    """{source: its packed attribute row}."""
    data = load_prepared(out)
    sources = [e["source"] for e in _manifest(out)["images"]]
    return dict(zip(sources, data.attribute_labels.tolist()))


def _by_source(out):
    return {e["source"]: e for e in _manifest(out)["images"]}


UTK_NAMES = [
    "white_63_1_0_20170109150557335.jpg.chip.png",  # a real UTKFace name behind a prefix
    "white5_0_0_20170101000000001.png",  # prefix without a separator
    "white_27_0_0_20170101000000002.png",
    "indian_200_1_3_20170101000000003.png",  # age out of range → unknown, gender kept
    "indian_39_1_20170116174525125.png",  # race missing (a real UTKFace defect)
    "asian_30_7_2_20170101000000004.png",  # gender code 7 → unknown, age kept
    "asian_85_1_2_20170101000000005.png",
]


def test_utkface_names_with_prefixes(tmp_path):
    raw = _raw(tmp_path / "raw", UTK_NAMES)
    report = prepare(raw, tmp_path / "out", size=16, workers=1, attributes="utkface")
    out = tmp_path / "out"
    manifest = _manifest(out)
    assert AttributeSet.from_list(manifest["attributes"]) == AttributeSet(
        (age_attribute(), gender_attribute())
    )
    assert manifest["attributes_from"] == "utkface"
    entries = _by_source(out)
    first = entries[UTK_NAMES[0]]
    assert first["attributes"] == {"age": 63, "gender": "female"} and first["unknown"] == {}
    assert entries[UTK_NAMES[1]]["attributes"] == {"age": 5, "gender": "male"}
    bad_age = entries[UTK_NAMES[3]]
    assert bad_age["attributes"] == {"gender": "female"}
    assert bad_age["unknown"] == {"age": "age 200 out of range 0-130"}
    no_race = entries[UTK_NAMES[4]]
    assert no_race["attributes"] == {} and no_race["unknown"] == {"age": NOT_UTK, "gender": NOT_UTK}
    bad_gender = entries[UTK_NAMES[5]]
    assert bad_gender["attributes"] == {"age": 30}
    assert "gender code 7" in bad_gender["unknown"]["gender"]

    data = load_prepared(out)
    assert data.attributes.names == ("age", "gender")
    expected = {  # (age decade, gender) per source; -1 unknown
        UTK_NAMES[0]: [6, 1],
        UTK_NAMES[1]: [0, 0],
        UTK_NAMES[2]: [2, 0],
        UTK_NAMES[3]: [-1, 1],
        UTK_NAMES[4]: [-1, -1],
        UTK_NAMES[5]: [3, -1],
        UTK_NAMES[6]: [8, 1],
    }
    rows = {
        e["source"]: data.attribute_labels[i].tolist() for i, e in enumerate(manifest["images"])
    }
    assert rows == expected

    counts = manifest["attribute_counts"]
    assert counts == report.attribute_counts
    assert counts["European"]["gender"] == {"male": 2, "female": 1, "unknown": 0}
    assert counts["Indian"]["age"]["unknown"] == 2 and sum(counts["Indian"]["age"].values()) == 2
    assert counts["Oriental"]["age"] == {
        **dict.fromkeys(age_attribute().values, 0),
        "30-39": 1,
        "80-89": 1,
        "unknown": 0,
    }
    assert report.attribute_unknown["gender"] == {NOT_UTK: 1, bad_gender["unknown"]["gender"]: 1}


def test_age_edges_bucket_the_ages(tmp_path):
    raw = _raw(tmp_path / "raw", UTK_NAMES)
    prepare(raw, tmp_path / "out", size=16, workers=1, attributes="utkface", age_edges="30,60")
    data = load_prepared(tmp_path / "out")
    assert data.attributes.get("age").values == ("0-29", "30-59", "60+")
    by = {e["source"]: i for i, e in enumerate(_manifest(tmp_path / "out")["images"])}
    ages = {name: int(data.attribute_labels[i, 0]) for name, i in by.items()}
    assert ages[UTK_NAMES[0]] == 2 and ages[UTK_NAMES[2]] == 0 and ages[UTK_NAMES[5]] == 1
    with pytest.raises(UsageError, match="--age-edges"):
        prepare(raw, tmp_path / "o2", size=16, workers=1, attributes="utkface", age_edges="30,20")
    with pytest.raises(UsageError, match="--age-edges needs --attributes"):
        prepare(raw, tmp_path / "o3", size=16, workers=1, age_edges="30")


def test_without_attributes_nothing_changes(tmp_path):
    raw = _raw(tmp_path / "raw", UTK_NAMES)
    prepare(raw, tmp_path / "out", size=16, workers=1)
    manifest = _manifest(tmp_path / "out")
    assert "attributes" not in manifest and "attribute_counts" not in manifest
    assert all("attributes" not in e for e in manifest["images"])
    assert load_prepared(tmp_path / "out").attribute_labels is None


def test_folder_layout_and_force_reprepare(tmp_path):
    raw = _raw(tmp_path / "raw", ["white/63_1_0_2017.png", "Indian/8_0_3_2017.png", "asian/x.png"])
    out = tmp_path / "out"
    prepare(raw, out, size=16, workers=1, attributes="utkface")
    first = (out / PACKED_FILE).read_bytes()
    entries = _by_source(out)
    assert entries["white/63_1_0_2017.png"]["attributes"] == {"age": 63, "gender": "female"}
    assert entries["Indian/8_0_3_2017.png"]["attributes"] == {"age": 8, "gender": "male"}
    assert entries["asian/x.png"]["unknown"] == {"age": NOT_UTK, "gender": NOT_UTK}
    # --force replaces it: the same attributes give the same bytes; none drops them
    prepare(raw, out, size=16, workers=1, attributes="utkface", force=True)
    assert (out / PACKED_FILE).read_bytes() == first
    prepare(raw, out, size=16, workers=1, force=True)
    assert load_prepared(out).attribute_labels is None and "attributes" not in _manifest(out)
    prepare(raw, out, size=16, workers=1, attributes="utkface", age_edges="50", force=True)
    sources = [e["source"] for e in _manifest(out)["images"]]
    ages = dict(zip(sources, load_prepared(out).attribute_labels[:, 0].tolist()))
    assert ages == {"white/63_1_0_2017.png": 1, "Indian/8_0_3_2017.png": 0, "asian/x.png": -1}


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_labels_layout_one_file_for_both(tmp_path):
    raw = _raw(tmp_path / "raw", ["p/a.png", "p/b.png", "p/c.png", "p/d.png", "p/e.png"])
    csv_file = _write(
        tmp_path / "people.csv",
        "\ufefffile,category,Age,gender,smile\n"
        "p/a.png,I,34,F,yes\n"
        "p/b.png,O,7.5,male,no\n"
        "./p/c.png,E,,1,UNKNOWN\n"  # empty age, gender code 1, smile marked unknown
        f"{raw / 'p' / 'd.png'},E,old,x,yes\n"  # absolute path; malformed age and gender
        "p/gone.png,E,40,m,no\n",  # names no image: a warning, not an error
    )
    messages = []
    prepare(
        raw,
        tmp_path / "out",
        size=16,
        workers=1,
        labels=csv_file,
        attributes=csv_file,
        progress=lambda e: messages.append(e.message),
    )
    manifest = _manifest(tmp_path / "out")
    attrs = AttributeSet.from_list(manifest["attributes"])
    assert attrs.names == ("age", "gender", "smile")  # category column ignored
    assert attrs.get("smile").values == ("no", "yes")  # sorted distinct non-empty cells
    assert manifest["attributes_from"] == str(csv_file)
    e = _by_source(tmp_path / "out")
    assert e["p/a.png"]["attributes"] == {"age": 34, "gender": "female", "smile": "yes"}
    assert e["p/b.png"]["attributes"] == {"age": 7.5, "gender": "male", "smile": "no"}
    assert e["p/c.png"]["attributes"] == {"gender": "female"}
    assert e["p/c.png"]["unknown"] == {"age": "empty", "smile": "smile marked unknown"}
    assert e["p/d.png"]["attributes"] == {"smile": "yes"}
    assert e["p/d.png"]["unknown"] == {
        "age": "age 'old' is not a number",
        "gender": "gender 'x' is not one of male, female",
    }
    assert "p/e.png" not in e  # not in the labels file: skipped before attributes
    assert any(m and "1 rows of the attributes file name no kept image" in m for m in messages)
    data = load_prepared(tmp_path / "out")
    rows = {
        s["source"]: data.attribute_labels[i].tolist() for i, s in enumerate(manifest["images"])
    }
    assert rows == {
        "p/a.png": [3, 1, 1],
        "p/b.png": [0, 0, 0],
        "p/c.png": [-1, 1, -1],
        "p/d.png": [-1, -1, 1],
    }
    assert manifest["attribute_counts"]["European"]["smile"] == {"no": 0, "yes": 1, "unknown": 1}


def test_csv_images_not_listed_are_unknown(tmp_path):
    raw = _raw(tmp_path / "raw", ["white_a.png", "white_b.png"])
    csv_file = _write(tmp_path / "a.csv", "file,gender\nwhite_a.png,female\n")
    prepare(raw, tmp_path / "out", size=16, workers=1, attributes=csv_file)
    e = _by_source(tmp_path / "out")
    assert e["white_b.png"]["unknown"] == {"gender": "not in the attributes file"}
    assert load_prepared(tmp_path / "out").attribute_labels.tolist() == [[1], [-1]]


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("", ["is empty"]),
        ("white_a.png,30\n", ["row 1", "expected a header row"]),
        ("file\nwhite_a.png\n", ["row 1", "no attribute columns"]),
        ("file,age,,gender\nwhite_a.png,1,,m\n", ["row 1", "column 3 has no name"]),
        ("file,age,AGE\nwhite_a.png,1,2\n", ["column 'AGE' appears twice"]),
        ("file,age\n\nwhite_a.png,1,2\n", ["row 3", "3 cells", "names 2 columns"]),
        ("file,age\nwhite_a.png,30\nwhite_a.png,31\n", ["row 3", "listed again (row 2)"]),
        ("file,age\n,30\n", ["row 2", "file cell is empty"]),
        ("file,age\n/elsewhere/x.png,30\n", ["row 2", "not inside"]),
        ("file,age\n", ["lists no files"]),
        ("file,mood\nwhite_a.png,\n", ["column 'mood' has no values"]),
        ("file,mood\nwhite_a.png,so so\n", ["column 'mood' has no values"]),
        ("file,hair colour\nwhite_a.png,red\n", ["row 1", "column name 'hair colour'"]),
        ("file,id\n" + "".join(f"f{i}.png,{i}\n" for i in range(300)), ["300 distinct"]),
        ("file,age\nwhite_a.png,\xff\n", []),  # written as UTF-8: fine (an unknown age)
    ],
)
def test_csv_errors_are_one_line_and_name_file_and_row(tmp_path, text, needles):
    raw = _raw(tmp_path / "raw", ["white_a.png"])
    csv_file = _write(tmp_path / "attrs.csv", text)
    if not needles:
        prepare(raw, tmp_path / "out", size=16, workers=1, attributes=csv_file)
        return
    with pytest.raises(FacediffError) as e:
        prepare(raw, tmp_path / "out", size=16, workers=1, attributes=csv_file)
    message = str(e.value)
    assert "\n" not in message and str(csv_file) in message
    for needle in needles:
        assert needle in message
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_csv_values_that_cannot_name_a_folder_are_unknown(tmp_path):
    """Categorical values name sample folders (I_yes): one with a space or a slash is
    unknown with its reason, not a value."""
    raw = _raw(tmp_path / "raw", ["white_a.png", "white_b.png", "white_c.png"])
    csv_file = _write(
        tmp_path / "a.csv", "file,glasses\nwhite_a.png,yes\nwhite_b.png,a/b\nwhite_c.png,N A\n"
    )
    prepare(raw, tmp_path / "out", size=16, workers=1, attributes=csv_file)
    data = load_prepared(tmp_path / "out")
    assert data.attributes.get("glasses").values == ("yes",)
    assert data.attribute_labels.tolist() == [[0], [-1], [-1]]
    e = _by_source(tmp_path / "out")
    assert e["white_b.png"]["unknown"] == {
        "glasses": "glasses 'a/b' is not a value name (letters, digits, + . -)"
    }


def test_csv_repeated_identical_rows_are_fine(tmp_path):
    raw = _raw(tmp_path / "raw", ["white_a.png"])
    csv_file = _write(tmp_path / "a.csv", "file,age\nwhite_a.png,30\nwhite_a.png, 30\n")
    prepare(raw, tmp_path / "out", size=16, workers=1, attributes=csv_file)
    assert load_prepared(tmp_path / "out").attribute_labels.tolist() == [[3]]


def test_unreadable_attribute_files(tmp_path):
    raw = _raw(tmp_path / "raw", ["white_a.png"])
    with pytest.raises(FacediffError, match="attributes file not found"):
        prepare(raw, tmp_path / "out", size=16, workers=1, attributes=tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_bytes(b"file,age\nwhite_a.png,\xff\n")
    with pytest.raises(FacediffError, match="cannot read attributes file"):
        prepare(raw, tmp_path / "out", size=16, workers=1, attributes=tmp_path / "bad.csv")
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)  # a bounded read: an error, not a hang
    with pytest.raises(FacediffError, match="not a regular file"):
        prepare(raw, tmp_path / "out", size=16, workers=1, attributes=fifo)
    csv_file = _write(tmp_path / "g.csv", "file,gender\nwhite_a.png,m\n")
    with pytest.raises(UsageError, match="no age column"):
        prepare(raw, tmp_path / "out", size=16, workers=1, attributes=csv_file, age_edges="30")


def test_cli_prints_counts_and_json(tmp_path):
    raw = _raw(tmp_path / "raw", UTK_NAMES)
    out = tmp_path / "out"
    base = ["prepare", str(raw), "--out", str(out), "--size", "16", "--workers", "1"]
    r = invoke([*base, "--attributes", "utkface", "--age-edges", "30,60"])
    assert r.exit_code == 0, r.output
    text = r.output
    for needle in ("Attribute age", "Attribute gender", "0-29", "30-59", "60+", "female"):
        assert needle in text
    assert f"gender unknown for 2 images ({NOT_UTK}: 1;" in text
    r = invoke([*base, "--attributes", "utkface", "--force", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["attribute_counts"] == _manifest(out)["attribute_counts"]
    assert [a["name"] for a in report["attributes"]] == ["age", "gender"]
    assert report["attribute_counts"]["European"]["gender"]["female"] == 1
    bad = invoke([*base, "--force", "--attributes", str(tmp_path / "missing.csv")])
    assert bad.exit_code == 1
    assert [ln for ln in bad.output.splitlines() if ln.startswith("facediff: error:")] == [
        f"facediff: error: attributes file not found: {tmp_path / 'missing.csv'}"
    ]
    edges = invoke([*base, "--force", "--attributes", "utkface", "--age-edges", "a"])
    assert edges.exit_code == 2 and "facediff: error: --age-edges" in edges.output


def test_same_raw_twice_is_byte_identical(tmp_path):
    raw = _raw(tmp_path / "raw", UTK_NAMES)
    for name in ("one", "two"):
        prepare(raw, tmp_path / name, size=16, workers=2, attributes="utkface")
    one, two = (tmp_path / n / PACKED_FILE for n in ("one", "two"))
    assert one.read_bytes() == two.read_bytes()
    assert torch.equal(
        load_prepared(tmp_path / "one").attribute_labels,
        load_prepared(tmp_path / "two").attribute_labels,
    )
    shutil.rmtree(tmp_path / "two")
