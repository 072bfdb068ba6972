import pytest

from inference.scoring import is_correct, normalise_letter


@pytest.mark.parametrize("raw, n, expected", [
    ("B", 4, "B"), (" b ", 4, "B"), ("(C)", 4, "C"), ("D.", 4, "D"),
    ("E", 4, None), ("", 4, None), (None, 4, None), ("AB", 4, None), ("a bowl", 4, None), ("Z", None, "Z"),
])
def test_normalise_letter(raw, n, expected):
    assert normalise_letter(raw, n) == expected


def test_is_correct_compares_letters():
    assert is_correct("b", "B", 4)
    assert not is_correct("C", "B", 4)
    assert not is_correct("", "B", 4)


def test_is_correct_rejects_an_unusable_ground_truth():
    with pytest.raises(ValueError, match="ground truth"):
        is_correct("A", None, 4)
    with pytest.raises(ValueError, match="ground truth"):
        is_correct("A", "E", 4)
