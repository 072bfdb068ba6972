"""Paper Eq. 2 confidence and option-letter parsing."""

import math

import pytest

from inference.backends.vlm import Generation, answer_from_generation
from inference.confidence import confidence_from_logprobs, extract_letter, letter_confidence


def test_eq2_equals_hand_computed_geometric_mean():
    logprobs = [math.log(0.9), math.log(0.5), math.log(0.8)]
    # exp(mean(log p)) = (0.9 * 0.5 * 0.8) ** (1/3)
    assert confidence_from_logprobs(logprobs) == pytest.approx((0.9 * 0.5 * 0.8) ** (1 / 3), rel=1e-12)
    assert confidence_from_logprobs([-0.1, -0.5, -0.3]) == pytest.approx(math.exp(-0.3), rel=1e-12)


def test_single_letter_confidence_is_its_probability():
    assert confidence_from_logprobs([math.log(0.83)]) == pytest.approx(0.83)


def test_zero_probability_token_gives_zero_and_bad_inputs_raise():
    assert confidence_from_logprobs([-float("inf"), -0.1]) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        confidence_from_logprobs([])
    with pytest.raises(ValueError, match="<= 0"):
        confidence_from_logprobs([0.5])
    with pytest.raises(ValueError):
        confidence_from_logprobs([float("nan")])


@pytest.mark.parametrize("text,letter", [
    ("B", "B"), (" C.", "C"), ("(D)", "D"), ("A. red car", "A"), ("Answer: B", "B"),
    ("The best answer is C", "C"), ("[B]", "B"), ("E", None), ("A man walks", None), ("", None),
    ("b", None),
])
def test_extract_letter(text, letter):
    assert extract_letter(text, 4) == letter


@pytest.mark.parametrize("text,letter", [
    ("A  man walks", None), ("A \t man", None),   # a word after any run of spaces is not a letter
    ("B \n Because", "B"), ("Answer:B", "B"), ("answer island", None),
])
def test_extract_letter_treats_whitespace_runs_alike(text, letter):
    assert extract_letter(text, 4) == letter


@pytest.mark.parametrize("reply", [
    "answer" + " " * 200_000 + "!",          # adjacent \s* runs around the optional "is"
    "B" + " " * 200_000 + "x",               # the letter followed by spaces and a word
    "(" + " " * 200_000 + "x",
    "option " * 50_000,
])
def test_extract_letter_is_linear_on_untrusted_replies(reply):
    # A sampled program chooses its answer string; with backtracking patterns these replies took
    # minutes (cubic in the run length) on the host. They must be read, as "no letter", at once.
    assert extract_letter(reply, 4) is None


def test_letter_confidence_renormalises_over_options():
    tops = {"A": math.log(0.2), " B": math.log(0.6), "C": math.log(0.1), "hello": math.log(0.1)}
    assert letter_confidence(tops, "B", 4) == pytest.approx(0.6 / 0.9)
    assert letter_confidence(tops, "D", 4) == 0.0


def test_answer_from_generation_mc_yn_open():
    gen = Generation(text="B", token_logprobs=[math.log(0.7)], tokens=["B"], num_tokens=2)
    r = answer_from_generation(gen, "mc", 4)
    assert (r.answer, r.metadata["letter_source"]) == ("B", "generated")
    assert r.confidence == pytest.approx(0.7)
    # No letter in the reply: the likeliest option letter among the first position's top
    # alternatives, scored by its own probability; blank tokens never count as letters.
    gen = Generation(text="zz", token_logprobs=[-1.0, -2.0], tokens=["z", "z"],
                     top_logprobs=[{"z": -1.0, " ": -0.5, "C": math.log(0.2), "A": math.log(0.1)}, {}])
    r = answer_from_generation(gen, "mc", 4)
    assert (r.answer, r.metadata["letter_source"]) == ("C", "top_logprobs")
    assert r.confidence == pytest.approx(0.2)
    r = answer_from_generation(Generation(text="zz", token_logprobs=[-1.0]), "mc", 4)
    assert (r.answer, r.confidence) == ("", 0.0)
    r = answer_from_generation(Generation(text="Yes.", token_logprobs=[math.log(0.6), -0.1]), "yn")
    assert r.answer == "yes" and r.confidence == pytest.approx(math.exp((math.log(0.6) - 0.1) / 2))
    r = answer_from_generation(Generation(text=" a red ball", token_logprobs=[-0.2, -0.4]), "open")
    assert r.answer == "a red ball" and r.confidence == pytest.approx(math.exp(-0.3))
