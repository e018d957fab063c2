import pytest

from app.datasets.tagexpr import TagExprError, parse, tag_set


def matches(expr: str, tags: list[str]) -> bool:
    return parse(expr).matches(tag_set(tags))


IMAGE = ["1girl", "long_hair", "Smile", "blue eyes", "star \\(symbol\\)", "t-shirt"]


def test_and_or_not_with_multiword_tags() -> None:
    expr = "long hair AND (smile OR grin) AND NOT hat"
    assert matches(expr, IMAGE)
    assert not matches(expr, IMAGE + ["hat"])
    assert not matches(expr, ["long hair", "frown"])
    assert matches(expr, ["long hair", "grin"])


def test_minus_comma_quotes_and_implicit_and() -> None:
    assert matches('"blue eyes", -hat', IMAGE)
    assert not matches('"blue eyes", -smile', IMAGE)
    assert matches("smile -hat", IMAGE)
    assert not matches("smile -\"blue eyes\"", IMAGE)
    assert matches("t-shirt", IMAGE)  # a hyphen inside a tag is not NOT


def test_matching_ignores_case_underscores_and_escapes() -> None:
    assert matches("LONG_HAIR, smile", IMAGE)
    assert matches("star (symbol)", IMAGE)
    assert matches("star_(symbol)", IMAGE)
    assert matches('"star \\(symbol\\)"', IMAGE)


def test_precedence_not_then_and_then_or() -> None:
    # a OR b AND c == a OR (b AND c)
    assert matches("a OR b AND c", ["a"])
    assert not matches("a OR b AND c", ["b"])
    assert matches("NOT a OR b", ["a", "b"])
    assert not matches("NOT a AND b", ["a", "b"])


def test_lowercase_operator_words_are_part_of_tags() -> None:
    assert matches("black and white", ["black and white"])
    assert not matches("black and white", ["black", "white"])


def test_wildcards() -> None:
    assert matches("*hair", IMAGE)
    assert matches("blue*", IMAGE)
    assert not matches("*hat*", IMAGE)


def test_blank_matches_everything() -> None:
    assert matches("   ", [])


@pytest.mark.parametrize("expr, message, position", [
    ("long hair AND (smile OR grin", "Unbalanced parenthesis", 14),
    ("smile) OR grin", "Unbalanced parenthesis", 5),
    ("smile AND", "Missing tag after AND", 6),
    ("NOT", "Missing tag after NOT", 0),
    ("a OR OR b", "Expected a tag after OR", 5),
    ("AND smile", "Expected a tag here", 0),
    ('"blue eyes', "Unterminated quote", 0),
    ("a AND ()", "Empty parentheses", 6),
])
def test_errors_name_the_problem_and_position(expr: str, message: str, position: int) -> None:
    with pytest.raises(TagExprError) as error:
        parse(expr)
    assert message in str(error.value)
    assert error.value.position == position
    assert str(error.value).endswith(f"at position {position}")
