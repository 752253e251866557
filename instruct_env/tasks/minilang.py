"""A tiny list-processing language, the answer format of the ``semantic_parse`` task.

A program is one expression over the input list ``x`` (a list of integers). It is parsed by
a hand-written recursive-descent parser and run by a small tree-walking interpreter: no
``eval``, no attribute access, no imports, bounded program size, nesting depth and integer
magnitude, so running an untrusted model completion is safe.

Grammar (EBNF; whitespace between tokens is ignored)::

    program  = expr ;
    expr     = term , { ( "+" | "-" ) , term } ;
    term     = unary , { "*" , unary } ;
    unary    = "-" , unary | atom ;
    atom     = INT
             | "x"
             | NAME , "(" , [ expr , { "," , expr } ] , ")"
             | "(" , expr , ")"
             | "[" , [ expr , { "," , expr } ] , "]" ;
    INT      = digit , { digit } ;
    NAME     = letter , { letter | digit | "_" } ;

Values are integers or lists of integers. ``+``, ``-``, ``*`` and unary ``-`` take integers.
A list literal holds integer expressions, e.g. ``[1, 2, 3]``. Functions:

=================  =========================  ==========================================
function           types                      result
=================  =========================  ==========================================
``sort(l)``        list -> list               ``l`` in ascending order
``reverse(l)``     list -> list               ``l`` back to front
``take(l, n)``     list, int -> list          the first ``n`` elements (``n >= 0``)
``drop(l, n)``     list, int -> list          all but the first ``n`` elements (``n >= 0``)
``filter_gt(l, n)`` list, int -> list         the elements greater than ``n``, in order
``filter_lt(l, n)`` list, int -> list         the elements less than ``n``, in order
``filter_even(l)`` list -> list               the even elements, in order
``filter_odd(l)``  list -> list               the odd elements, in order
``len(l)``         list -> int                the number of elements
``sum(l)``         list -> int                the sum (``0`` for an empty list)
``max(l)``         list -> int                the largest element (error when empty)
``min(l)``         list -> int                the smallest element (error when empty)
=================  =========================  ==========================================

Any problem (a syntax error, an unknown name, a wrong argument count or type, ``max`` of an
empty list, a limit exceeded) raises :class:`MiniLangError`.

>>> run("sum(filter_gt(x, 3))", [1, 5, 7, 2])
12
>>> run("take(sort(x), 2)", [9, 4, 6])
[4, 6]
>>> run("max(x) - min(x)", [3, 8, 1])
7
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from instruct_env.error import InstructEnvError

__all__ = [
    "MiniLangError",
    "Num",
    "Var",
    "Call",
    "ListLit",
    "Neg",
    "BinOp",
    "Node",
    "Value",
    "FUNCTIONS",
    "parse",
    "evaluate",
    "run",
    "format_value",
]

MAX_PROGRAM_CHARS = 256
MAX_DEPTH = 32
MAX_ABS_INT = 10**12

Value = int | list[int]


class MiniLangError(InstructEnvError, ValueError):
    """A mini-language program could not be parsed or run."""


# ---------------------------------------------------------------------------------------------
# Syntax tree
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    """An integer literal."""

    value: int


@dataclass(frozen=True)
class Var:
    """A variable reference."""

    name: str


@dataclass(frozen=True)
class Call:
    """A call of a built-in function."""

    func: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class ListLit:
    """A list literal."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Neg:
    """Unary minus."""

    operand: Node


@dataclass(frozen=True)
class BinOp:
    """A binary operation: ``+``, ``-`` or ``*``."""

    op: str
    left: Node
    right: Node


Node = Num | Var | Call | ListLit | Neg | BinOp


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z][A-Za-z0-9_]*)|([-+*(),\[\]]))")


def _tokenize(source: str) -> list[tuple[str, str, int]]:
    """Split ``source`` into ``(kind, text, position)`` tokens; kind is INT, NAME or OP."""
    tokens = []
    pos = 0
    end = len(source.rstrip())
    while pos < end:
        match = _TOKEN.match(source, pos)
        if match is None:
            bad = source[pos:].lstrip()[:1]
            raise MiniLangError(f"Unexpected character {bad!r} at position {pos}.")
        number, name, op = match.groups()
        assert match.lastindex is not None  # every alternative of _TOKEN is a group
        start = match.start(match.lastindex)
        if number is not None:
            tokens.append(("INT", number, start))
        elif name is not None:
            tokens.append(("NAME", name, start))
        else:
            tokens.append(("OP", op, start))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, text: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            want = f"{text!r}" if text else "more input"
            raise MiniLangError(f"Unexpected end of program; expected {want}.")
        if text is not None and tok[1] != text:
            raise MiniLangError(f"Expected {text!r} at position {tok[2]}, got {tok[1]!r}.")
        self.i += 1
        return tok

    def program(self) -> Node:
        node = self.expr()
        tok = self.peek()
        if tok is not None:
            raise MiniLangError(f"Unexpected {tok[1]!r} at position {tok[2]} after a complete expression.")
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise MiniLangError(f"Program nests deeper than {MAX_DEPTH} levels.")
        node = self.term()
        while (tok := self.peek()) is not None and tok[1] in ("+", "-"):
            self.i += 1
            node = BinOp(tok[1], node, self.term())
        self.depth -= 1
        return node

    def term(self) -> Node:
        node = self.unary()
        while (tok := self.peek()) is not None and tok[1] == "*":
            self.i += 1
            node = BinOp("*", node, self.unary())
        return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok[1] == "-":
            self.i += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise MiniLangError(f"Program nests deeper than {MAX_DEPTH} levels.")
            node = Neg(self.unary())
            self.depth -= 1
            return node
        return self.atom()

    def atom(self) -> Node:
        kind, text, pos = self.take()
        if kind == "INT":
            return Num(int(text))
        if kind == "NAME":
            nxt = self.peek()
            if nxt is not None and nxt[1] == "(":
                self.i += 1
                return Call(text, self.items(")"))
            return Var(text)
        if text == "(":
            node = self.expr()
            self.take(")")
            return node
        if text == "[":
            return ListLit(self.items("]"))
        raise MiniLangError(f"Unexpected {text!r} at position {pos}.")

    def items(self, closer: str) -> tuple[Node, ...]:
        """Parse ``[expr {"," expr}] closer`` (the opener is already consumed)."""
        items: list[Node] = []
        tok = self.peek()
        if tok is not None and tok[1] == closer:
            self.i += 1
            return ()
        while True:
            items.append(self.expr())
            tok = self.take()
            if tok[1] == closer:
                return tuple(items)
            if tok[1] != ",":
                raise MiniLangError(f"Expected ',' or {closer!r} at position {tok[2]}, got {tok[1]!r}.")


def parse(source: str) -> Node:
    """Parse a program into a syntax tree.

    Raises:
        MiniLangError: the program is not a string, too long, or not in the grammar.

    >>> parse("len(x) + 1")
    BinOp(op='+', left=Call(func='len', args=(Var(name='x'),)), right=Num(value=1))
    """
    if not isinstance(source, str):
        raise MiniLangError(f"A program must be a string, got {type(source).__name__}.")
    if len(source) > MAX_PROGRAM_CHARS:
        raise MiniLangError(f"Program is {len(source)} characters long; the limit is {MAX_PROGRAM_CHARS}.")
    if not source.strip():
        raise MiniLangError("Empty program.")
    return _Parser(source).program()


# ---------------------------------------------------------------------------------------------
# Interpreter
# ---------------------------------------------------------------------------------------------


def _check_int(value: int) -> int:
    if abs(value) > MAX_ABS_INT:
        raise MiniLangError(f"Integer {value} is larger in magnitude than the limit {MAX_ABS_INT}.")
    return value


def _nonempty(name: str, xs: list[int]) -> list[int]:
    if not xs:
        raise MiniLangError(f"{name}() of an empty list.")
    return xs


def _count(name: str, n: int) -> int:
    if n < 0:
        raise MiniLangError(f"{name}() needs a count >= 0, got {n}.")
    return n


# name -> (argument types, implementation); "L" is a list, "I" an integer.
FUNCTIONS: Mapping[str, tuple[str, Callable[..., Value]]] = {
    "sort": ("L", lambda xs: sorted(xs)),
    "reverse": ("L", lambda xs: xs[::-1]),
    "take": ("LI", lambda xs, n: xs[: _count("take", n)]),
    "drop": ("LI", lambda xs, n: xs[_count("drop", n) :]),
    "filter_gt": ("LI", lambda xs, n: [v for v in xs if v > n]),
    "filter_lt": ("LI", lambda xs, n: [v for v in xs if v < n]),
    "filter_even": ("L", lambda xs: [v for v in xs if v % 2 == 0]),
    "filter_odd": ("L", lambda xs: [v for v in xs if v % 2 == 1]),
    "len": ("L", lambda xs: len(xs)),
    "sum": ("L", lambda xs: sum(xs)),
    "max": ("L", lambda xs: max(_nonempty("max", xs))),
    "min": ("L", lambda xs: min(_nonempty("min", xs))),
}

_TYPE_NAMES = {"L": "a list", "I": "an integer"}


def _type_code(value: Value) -> str:
    return "L" if isinstance(value, list) else "I"


def evaluate(node: Node, env: Mapping[str, Value]) -> Value:
    """Run a parsed program; ``env`` maps variable names (normally just ``x``) to values.

    Raises:
        MiniLangError: unknown name, wrong argument count or type, or a limit exceeded.
    """
    if isinstance(node, Num):
        return _check_int(node.value)
    if isinstance(node, Var):
        if node.name not in env:
            raise MiniLangError(f"Unknown variable {node.name!r}; the only input is 'x'.")
        value = env[node.name]
        return list(value) if isinstance(value, list) else value
    if isinstance(node, Neg):
        value = evaluate(node.operand, env)
        if isinstance(value, list):
            raise MiniLangError("Unary '-' needs an integer, got a list.")
        return -value
    if isinstance(node, BinOp):
        left, right = evaluate(node.left, env), evaluate(node.right, env)
        if isinstance(left, list) or isinstance(right, list):
            raise MiniLangError(f"Operator {node.op!r} needs two integers, got a list.")
        if node.op == "+":
            return _check_int(left + right)
        if node.op == "-":
            return _check_int(left - right)
        return _check_int(left * right)
    if isinstance(node, ListLit):
        items = [evaluate(item, env) for item in node.items]
        if any(isinstance(item, list) for item in items):
            raise MiniLangError("List literals hold integers only.")
        return cast("list[int]", items)  # no item is a list (checked above)
    if isinstance(node, Call):
        if node.func not in FUNCTIONS:
            from instruct_env.error import suggest

            raise MiniLangError(f"Unknown function {node.func!r}.{suggest(node.func, FUNCTIONS)}")
        signature, impl = FUNCTIONS[node.func]
        if len(node.args) != len(signature):
            raise MiniLangError(f"{node.func}() takes {len(signature)} argument(s), got {len(node.args)}.")
        args = [evaluate(arg, env) for arg in node.args]
        for k, (want, arg) in enumerate(zip(signature, args)):
            if _type_code(arg) != want:
                raise MiniLangError(
                    f"Argument {k + 1} of {node.func}() must be {_TYPE_NAMES[want]}, "
                    f"got {_TYPE_NAMES[_type_code(arg)]}."
                )
        return impl(*args)
    raise MiniLangError(f"Not a syntax-tree node: {node!r}.")


def run(source: str, x: Sequence[int]) -> Value:
    """Parse and run ``source`` with the input list ``x``.

    Raises:
        MiniLangError: the program is malformed or fails at run time.
    """
    return evaluate(parse(source), {"x": [int(v) for v in x]})


def format_value(value: Value) -> str:
    """Render a value the way the task shows lists: space-separated integers.

    >>> format_value([3, 1, 2]), format_value(7), format_value([])
    ('3 1 2', '7', '')
    """
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)
