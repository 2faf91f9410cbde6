import json

import pytest

from facediff.categories import (
    DEFAULT_CATEGORIES,
    CategoryMap,
    load_categories_file,
    make_category,
    parse_category_option,
    resolve_categories,
)
from facediff.errors import FacediffError
from facediff.mix import default_mixes, parse_mix, resolve_mixes


@pytest.mark.parametrize(
    ("filename", "code"),
    [
        ("indian_001.jpg", "I"),
        ("indian356.jpg", "I"),
        ("Indian-001.PNG", "I"),
        ("Asian-7.PNG", "O"),
        ("WHITE_17.png", "E"),
        ("white_1_0_0_2017.jpg.chip.jpg", "E"),
        ("latino_3.jpg", None),
        ("xindian_3.jpg", None),
    ],
)
def test_default_prefix_matching(filename, code):
    cat = DEFAULT_CATEGORIES.match(filename)
    assert (cat.code if cat else None) == code


def test_longest_prefix_wins():
    cats = CategoryMap((make_category("a", "A", "A"), make_category("ab", "AB", "B")))
    assert cats.match("abc.jpg").code == "B"
    assert cats.match("ac.jpg").code == "A"


def test_parse_category_option_and_validation():
    c = parse_category_option("latino=Latino:L")
    assert (c.prefix, c.name, c.code) == ("latino", "Latino", "L")
    assert parse_category_option("Black=Black people:b").code == "B"
    for bad in ["latino", "latino=Latino", "=X:Y", "a=../evil:X", "a=A/B:X", "a=Name:XY", "a=N:1"]:
        with pytest.raises(FacediffError):
            parse_category_option(bad)
    with pytest.raises(FacediffError, match="duplicate category code"):
        resolve_categories(["a=A:X", "b=B:X"])
    with pytest.raises(FacediffError, match="duplicate category name"):
        resolve_categories(["a=Same:X", "b=same:Y"])


def test_categories_file(tmp_path):
    f = tmp_path / "cats.json"
    f.write_text(json.dumps({"categories": [{"prefix": "cat", "name": "Cat", "code": "C"}]}))
    cats = load_categories_file(f)
    assert cats.codes == "C"
    f.write_text("{not json")
    with pytest.raises(FacediffError, match="cannot read categories file"):
        load_categories_file(f)
    with pytest.raises(FacediffError, match="not found"):
        load_categories_file(tmp_path / "missing.json")


def test_a_categories_file_saved_by_notepad_is_read(tmp_path):
    f = tmp_path / "cats.json"
    cats = [
        {"prefix": "cat", "name": "Cat", "code": "C"},
        {"prefix": "dog", "name": "Dog", "code": "D"},
    ]
    text = json.dumps(cats, indent=1).replace("\n", "\r\n")
    f.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_categories_file(f).codes == "CD"


@pytest.mark.parametrize(
    ("spec", "label", "weights"),
    [
        ("OIE", "OIE", {"O": 1 / 3, "I": 1 / 3, "E": 1 / 3}),
        ("O+I", "OI", {"O": 0.5, "I": 0.5}),
        ("oriental+indian", "OI", {"O": 0.5, "I": 0.5}),
        ("O:0.7,I:0.3", "O70I30", {"O": 0.7, "I": 0.3}),
        ("O:7,I:3", "O70I30", {"O": 0.7, "I": 0.3}),
        ("E", "E", {"E": 1.0}),
        ("European", "E", {"E": 1.0}),
    ],
)
def test_parse_mix(spec, label, weights):
    mix = parse_mix(spec, DEFAULT_CATEGORIES)
    assert mix.label == label
    got = mix.to_dict(DEFAULT_CATEGORIES)["weights"]
    assert got.keys() == weights.keys()
    for k, w in weights.items():
        assert got[k] == pytest.approx(w)
    assert sum(mix.weights) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("OX", "unknown category 'X'.*valid: I \\(Indian\\), O \\(Oriental\\), E"),
        ("O:0.5,I:0", "positive"),
        ("O:-1,I:2", "positive"),
        ("O:abc", "invalid weight"),
        ("OO", "more than once"),
        ("O+Oriental", "more than once"),
        ("", "empty"),
        ("O+", "empty term"),
        ("O:nan,I:1", "positive"),
    ],
)
def test_parse_mix_errors(spec, match):
    with pytest.raises(FacediffError, match=match):
        parse_mix(spec, DEFAULT_CATEGORIES)


def test_default_mixes():
    labels = [m.label for m in default_mixes(DEFAULT_CATEGORIES)]
    assert labels == ["I", "O", "E", "OI", "OE", "IE", "OIE"]


def test_one_mix_named_in_several_orders_is_sampled_once():
    plan = resolve_mixes(DEFAULT_CATEGORIES, ["OI", "IO", "O:1,I:1", "I+O"], ["O", "o"])
    assert [m.label for m in plan] == ["O", "OI"]
    weighted = resolve_mixes(DEFAULT_CATEGORIES, ["O:0.7,I:0.3", "I:3,O:7", "I:0.7,O:0.3"])
    assert [m.label for m in weighted] == ["O70I30", "I70O30"]


@pytest.mark.parametrize("spec", ["O,I", "OIE", "O+E", "Oriental:1,Indian:1"])
def test_a_category_option_naming_several_categories_is_refused(spec):
    with pytest.raises(FacediffError, match=r"--category .* repeat the option .* --mix"):
        resolve_mixes(DEFAULT_CATEGORIES, None, [spec])


def test_an_empty_category_option_names_the_option():
    with pytest.raises(FacediffError, match="--category ''"):
        resolve_mixes(DEFAULT_CATEGORIES, ["OI"], [" "])
