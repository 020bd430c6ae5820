"""Output scalars: numbers printed by an op become metrics, with steps."""

from __future__ import annotations

from typing import Any

import pytest

from tether.errors import TetherError
from tether.ops.scalars import DEFAULT_PATTERN, Pattern, Scanner, compile_patterns, scan_line

DEFAULT = [Pattern(DEFAULT_PATTERN, True)]


@pytest.mark.parametrize(
    ("line", "pairs"),
    [
        ("loss: 0.25", [("loss", 0.25)]),
        ("acc=0.97", [("acc", 0.97)]),
        ("epoch 3/10  loss: 0.5  val/acc=0.91", [("loss", 0.5), ("val/acc", 0.91)]),
        ("train.loss = -1.5e-3, top-5: 88%", [("train.loss", -0.0015), ("top-5", 88.0)]),
        ("accuracy: 0.97.", [("accuracy", 0.97)]),
        ("lr=1e-4 momentum=.9", [("lr", 0.0001), ("momentum", 0.9)]),
        # Not scalars: times, fractions, versions, words, numbers as keys.
        ("started at 12:30:01", []),
        ("time: 12:30", []),
        ("epoch: 1/10", []),
        ("version=1.2.3", []),
        ("name: resnet", []),
        ("3: 4", []),
        ("loss:0.5x", []),
        ("", []),
    ],
)
def test_default_patterns(line: str, pairs: list[tuple[str, float]]):
    assert scan_line(line, DEFAULT) == pairs


def test_custom_patterns_with_key_value_or_named_groups():
    patterns = compile_patterns([r"(?P<key>\w+) is (?P<value>\S+)", r"best (?P<best>\d+)%"])
    assert scan_line("loss is 0.5 and best 97%", patterns) == [("loss", 0.5), ("best", 97.0)]
    assert scan_line("loss is high", patterns) == []  # not a number: skipped
    shorthand = compile_patterns([r"^\key -> \value$"])
    assert scan_line("acc -> 0.75", shorthand) == [("acc", 0.75)]


def test_pattern_settings():
    assert compile_patterns(True) == DEFAULT
    assert compile_patterns(False) == []
    assert compile_patterns([]) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["("], "ops.t.output-scalars[0]: bad regular expression '(' (missing ), unterminated "),
        (
            [r"loss (\d+)"],
            "ops.t.output-scalars[0]: 'loss (\\\\d+)' needs the named groups 'key' and 'value'",
        ),
        ([r"(?P<key>\w+)"], "ops.t.output-scalars[0]: '(?P<key>\\\\w+)' needs the named groups"),
    ],
)
def test_bad_patterns(spec: list[str], message: str):
    with pytest.raises(TetherError) as info:
        compile_patterns(spec, "ops.t.output-scalars")
    assert str(info.value).startswith(message)


def test_step_sets_the_step_of_what_follows():
    logged: list[tuple[dict[str, Any], int | None]] = []
    scanner = Scanner(DEFAULT, lambda values, step: logged.append((values, step)))
    scanner.feed("loss: 1.0")
    scanner.feed("step: 1 loss: 0.5 acc: 0.7")
    scanner.feed("loss: 0.4 step: 2 acc: 0.8")
    scanner.feed("100%|#####| 10/10 loss=9\r100%|#####| 10/10 loss=0.3")
    scanner.feed("nothing here")
    assert logged == [
        ({"loss": 1.0}, None),
        ({"loss": 0.5, "acc": 0.7}, 1),
        ({"loss": 0.4}, 1),
        ({"acc": 0.8}, 2),
        ({"loss": 0.3}, 2),
    ]


def test_no_patterns_no_scanning():
    logged: list[Any] = []
    Scanner([], lambda values, step: logged.append(values)).feed("loss: 1")
    assert logged == []
