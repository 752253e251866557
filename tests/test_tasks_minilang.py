"""Tests of the semantic-parse mini-language: parser, interpreter, limits, safety."""

from __future__ import annotations

import builtins

import pytest

from instruct_env.tasks import minilang
from instruct_env.tasks.minilang import BinOp, Call, ListLit, MiniLangError, Neg, Num, Var, parse, run

X = [5, 2, 8, 3, 8, 1]


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        ("x", X),
        ("sort(x)", [1, 2, 3, 5, 8, 8]),
        ("reverse(x)", [1, 8, 3, 8, 2, 5]),
        ("take(x, 2)", [5, 2]),
        ("drop(x,4)", [8, 1]),
        ("take(x, 100)", X),
        ("filter_gt(x, 3)", [5, 8, 8]),
        ("filter_lt(x, 3)", [2, 1]),
        ("filter_even(x)", [2, 8, 8]),
        ("filter_odd(x)", [5, 3, 1]),
        ("len(x)", 6),
        ("sum(x)", 27),
        ("max(x)", 8),
        ("min(x)", 1),
        ("sum(filter_gt(x, 3))", 21),
        ("take(reverse(sort(x)), 3)", [8, 8, 5]),
        ("max(x) - min(x)", 7),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 2 - 3", 5),
        ("-3 + 5", 2),
        ("--3", 3),
        ("len([])", 0),
        ("sum([1, 2, -3 * 2])", -3),
        ("sort([3, 1, 2])", [1, 2, 3]),
        ("  len( x )  ", 6),
        ("filter_gt(x, max(x) - 2)", [8, 8]),
    ],
)
def test_valid_programs(program, expected):
    assert run(program, X) == expected


def test_parse_tree_shapes():
    assert parse("sum(filter_gt(x, 3))") == Call("sum", (Call("filter_gt", (Var("x"), Num(3))),))
    assert parse("1 - 2 * 3") == BinOp("-", Num(1), BinOp("*", Num(2), Num(3)))
    assert parse("-[1]") == Neg(ListLit((Num(1),)))


def test_input_list_is_not_mutated():
    x = [3, 1, 2]
    run("sort(x)", x)
    run("reverse(x)", x)
    assert x == [3, 1, 2]


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("", "Empty program"),
        ("   ", "Empty program"),
        ("sum(x", r"Unexpected end of program; expected more input"),
        ("sum(x))", r"Unexpected '\)' at position 6 after a complete expression"),
        ("sum x", r"Unexpected 'x' at position 4"),
        ("sum(x,)", r"Unexpected '\)'"),
        ("take(x 2)", r"Expected ',' or '\)' at position 7, got '2'"),
        ("x.sort()", r"Unexpected character '\.' at position 1"),
        ("__import__('os')", r"Unexpected character '_' at position 0"),
        ("len('x')", r"Unexpected character \"'\" at position 4"),
        ("y", r"Unknown variable 'y'"),
        ("sums(x)", r"Unknown function 'sums'\. Did you mean 'sum'"),
        ("eval(x)", r"Unknown function 'eval'"),
        ("sum(x, 1)", r"sum\(\) takes 1 argument\(s\), got 2"),
        ("take(x)", r"take\(\) takes 2 argument\(s\), got 1"),
        ("sum(3)", r"Argument 1 of sum\(\) must be a list, got an integer"),
        ("take(x, x)", r"Argument 2 of take\(\) must be an integer, got a list"),
        ("x + 1", r"Operator '\+' needs two integers, got a list"),
        ("-x", r"Unary '-' needs an integer, got a list"),
        ("[x]", "List literals hold integers only"),
        ("max(filter_gt(x, 100))", r"max\(\) of an empty list"),
        ("take(x, -1)", r"take\(\) needs a count >= 0, got -1"),
        ("99999999 * 99999999", "larger in magnitude than the limit"),
        ("len(" * 40 + "x" + ")" * 40, "nests deeper than 32 levels"),
        ("1+" * 200 + "1", "the limit is 256"),
        ("-" * 100 + "1", "nests deeper than 32 levels"),
    ],
)
def test_malformed_programs_raise(program, message):
    with pytest.raises(MiniLangError, match=message):
        run(program, X)


def test_non_string_program():
    with pytest.raises(MiniLangError, match="must be a string, got int"):
        parse(3)


def test_no_eval_or_exec(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("minilang must not call eval/exec/compile")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    assert run("sum(filter_gt(x, 3))", X) == 21
    with pytest.raises(MiniLangError):
        run("__import__('os').system('true')", X)


def test_format_value():
    assert minilang.format_value([1, 2]) == "1 2"
    assert minilang.format_value(-4) == "-4"
