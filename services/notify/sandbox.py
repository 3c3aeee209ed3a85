"""A Jinja sandbox that also bounds what rendering a template may cost.

Jinja's sandbox keeps a template away from Python's internals, but not from looping for hours
or building a gigabyte string. Staff edit the templates and the consumer renders them, so
every rendering here runs on a budget: ``range()`` is short, loop iterations and calls are
counted, every value a template builds is size-checked, and the output stops at a length.
Templates nest only so deep, so that no parse, compilation or rendering exhausts the stack.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from decimal import Decimal
from functools import wraps
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.lexer import (
    TOKEN_LBRACE,
    TOKEN_LBRACKET,
    TOKEN_LPAREN,
    TOKEN_RBRACE,
    TOKEN_RBRACKET,
    TOKEN_RPAREN,
    Token,
)
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_RANGE = 1_000  # items one range() may hold
MAX_STEPS = 10_000  # loop iterations plus calls in one rendering
MAX_SIZE = 10_000  # characters (or items) of any value a template builds
MAX_INT_BITS = 256  # a product of integers; notifications count points and hours
# How deep a template may nest: blocks, expressions and brackets inside one another, and calls
# (macros calling macros) while it renders. Parsing, compiling and rendering recurse once or
# more a level, so without a bound a few hundred characters exhaust Python's stack.
MAX_DEPTH = 20
TOO_DEEP = f"it nests blocks, expressions or brackets more than {MAX_DEPTH} levels deep"
_OPENING = frozenset({TOKEN_LPAREN, TOKEN_LBRACKET, TOKEN_LBRACE})
_CLOSING = frozenset({TOKEN_RPAREN, TOKEN_RBRACKET, TOKEN_RBRACE})

# Methods and filters whose integer arguments say how long a string, or how many items, to
# build: ``slice`` and ``batch`` make that many lists, whatever they are given.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_WIDTH_FILTERS = frozenset({"center", "slice", "batch", "truncate", "wordwrap"})
# What a filter repeats on every line of its text (an indent, a line break of wordwrap's, a
# JSON indent): at most this long, or a 10,000-line text makes a hundred million characters.
MAX_PER_LINE = 64
# Each filter's argument of that kind: its keyword, and its place after the filtered value.
_PER_LINE_FILTERS = {"indent": ("width", 1), "wordwrap": ("wrapstring", 3), "tojson": ("indent", 1)}
# Methods a template has no need of that build past any width check (a table mapping one
# character to many).
_REFUSED_METHODS = frozenset({"translate", "maketrans"})
_PRINTF_WIDTH = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?")
_SIZED = (str, bytes, list, tuple, dict, set, frozenset)


class LimitExceeded(SecurityError):
    """Rendering would take more time or memory than a notification may."""


class _Budget:
    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.calls = 0

    def spend(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise LimitExceeded(f"it takes more than {MAX_STEPS} loop iterations and calls")

    def enter(self) -> None:
        """A call starts inside the calls under way."""
        self.calls += 1
        if self.calls > MAX_DEPTH:
            raise LimitExceeded(
                f"it nests calls more than {MAX_DEPTH} deep (a macro calling itself?)"
            )

    def leave(self) -> None:
        self.calls -= 1


# One budget per rendering; unset while a template compiles, when nothing runs in a loop.
_budget: ContextVar[_Budget | None] = ContextVar("budget", default=None)


def _spend() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.spend()


def _bounded(value: Any) -> Any:
    if isinstance(value, _SIZED) and len(value) > MAX_SIZE:
        raise LimitExceeded(f"it builds a value longer than {MAX_SIZE}")
    return value


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_SIZE:
        raise LimitExceeded(f"it asks for a width or count of {width}, more than {MAX_SIZE}")


def _check_per_line(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse what ``name`` would repeat on each line, if longer than ``MAX_PER_LINE``."""
    keyword, place = _PER_LINE_FILTERS[name]
    given = kwargs.get(keyword, args[place] if len(args) > place else None)
    size = len(given) if isinstance(given, str) else given
    if isinstance(size, int) and not isinstance(size, bool) and size > MAX_PER_LINE:
        raise LimitExceeded(
            f"its {name} repeats {size} characters on every line, more than {MAX_PER_LINE}"
        )


def _check_joined(pieces: list[Any], separator: Any) -> None:
    """Refuse joining ``pieces`` if the text would be longer than ``MAX_SIZE``, before it is."""
    size = len(str(separator)) * max(0, len(pieces) - 1)
    for piece in pieces:
        size += len(piece) if isinstance(piece, str) else len(str(piece))
        if size > MAX_SIZE:
            raise LimitExceeded(f"it builds a value longer than {MAX_SIZE}")


def _check_replaced(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    """Refuse a replacement whose text would be longer than ``MAX_SIZE``, before it is made."""
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and 0 <= count < times:
        times = count
    if len(text) + times * (len(new) - len(old)) > MAX_SIZE:
        raise LimitExceeded(f"it builds a value longer than {MAX_SIZE}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _sum(function: Callable[..., Any]) -> Callable[..., Any]:
    """``sum`` of numbers only: summed lists or strings grow as the square of their count."""

    @wraps(function)
    def numbers_only(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        items = list(_counted(iterable))
        if not _number(start):
            raise LimitExceeded("sum adds numbers only")
        total = function(environment, items, attribute, start)
        if not _number(total):
            raise LimitExceeded("sum adds numbers only")
        return total

    return numbers_only


def _check_printf(text: str) -> None:
    for match in _PRINTF_WIDTH.finditer(text):
        for width in match.groups():
            if width == "*":
                raise LimitExceeded("a width taken from data ('*') is not allowed")
            _check_width(int(width) if width else None)


def _check_format(text: str) -> None:
    for _, _, spec, _ in string.Formatter().parse(text):
        if spec and "{" in spec:
            raise LimitExceeded("a width taken from data ('{:{...}}') is not allowed")
        for width in re.findall(r"\d+", spec or ""):
            _check_width(int(width))


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise LimitExceeded(f"it multiplies integers past {MAX_INT_BITS} bits")
        return
    for times, value in ((left, right), (right, left)):
        if isinstance(times, int) and isinstance(value, _SIZED) and len(value) * times > MAX_SIZE:
            raise LimitExceeded(
                f"it repeats a value of length {len(value)} {times} times, "
                f"more than {MAX_SIZE} in all"
            )


def _range(*args: int) -> range:
    """``range()`` for templates: at most ``MAX_RANGE`` items."""
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise LimitExceeded(f"range() may hold at most {MAX_RANGE} items, not {len(items)}")
    return items


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _spend()
        yield item


def _limited_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    if name == "sum":
        function = _sum(function)
    # The text, list or value a filter works on: after the environment or context, if passed.
    first = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @wraps(function)  # keeps Jinja's pass_context marks
    def limited(*args: Any, **kwargs: Any) -> Any:
        own = args[first:]
        if name in _WIDTH_FILTERS:
            for width in (*own[1:], *kwargs.values()):
                _check_width(width)
        if name in _PER_LINE_FILTERS:
            _check_per_line(name, own, kwargs)
        if name == "format" and own and isinstance(own[0], str):
            _check_printf(own[0])
        if name == "join" and own:
            pieces = list(_counted(own[0]))
            _check_joined(pieces, kwargs.get("d", own[1] if len(own) > 1 else ""))
            args = (*args[:first], pieces, *own[1:])
        if name == "replace" and len(own) >= 3:
            _check_replaced(*own[:4])
        made = function(*args, **kwargs)
        # A generator (select, map, slice, batch ...) pays a step for each item it yields.
        return _counted(made) if isinstance(made, Iterator) else _bounded(made)

    return limited


def _check_brackets(tokens: Iterable[Token]) -> None:
    """Refuse brackets nested too deep: the parser recurses a dozen times a level, and a
    parenthesis leaves no node behind for ``_check_depth`` to see."""
    depth = 0
    for token in tokens:
        if token.type in _OPENING:
            depth += 1
            if depth > MAX_DEPTH:
                raise LimitExceeded(TOO_DEEP)
        elif token.type in _CLOSING:
            depth -= 1


def _check_depth(tree: nodes.Node) -> None:
    """Refuse a tree deeper than ``MAX_DEPTH``, walked without recursing: compiling and
    every later walk of the tree recurse once or more a level."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise LimitExceeded(TOO_DEEP)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


def _filter(node: nodes.Node | None, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None)


class _Metered(NodeTransformer):
    """Routes what the operator hooks cannot see through the ``counted``/``bounded`` filters."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter(node.iter, "counted")
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node, "bounded")

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.Node:
        self.generic_visit(node)
        node.filter = _filter(node.filter, "bounded")
        return node


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose renderings stay short and cheap, or raise LimitExceeded."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _range
        self.filters = {name: _limited_filter(name, f) for name, f in self.filters.items()}
        self.filters["counted"] = _counted
        self.filters["bounded"] = _bounded

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse ``source`` if it nests no deeper than ``MAX_DEPTH``, or raise LimitExceeded,
        wherever it is parsed: when staff save it, and when a worker compiles it."""
        _check_brackets(self._tokenize(source, name, filename))
        try:
            tree = super()._parse(source, name, filename)
        except RecursionError:
            # Nested so deep (blocks, operators) that the parser ran out of stack first.
            raise LimitExceeded(TOO_DEEP) from None
        _check_depth(tree)
        metered = _Metered().visit(tree)
        assert isinstance(metered, nodes.Template)
        return metered

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Refuse ``**``, and ``*`` or ``%`` whose result would be too large."""
        if operator == "**":
            raise LimitExceeded("the ** operator is not allowed")
        if operator == "*":
            _check_product(left, right)
        if operator == "%" and isinstance(left, str):
            _check_printf(left)
        return _bounded(super().call_binop(context, operator, left, right))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Count the call, refuse widths too large to build and calls nested too deep, and
        bound what it returns."""
        _spend()
        # The sandbox hands out str.format wrapped; the string is on the wrapped method.
        text = getattr(getattr(obj, "__wrapped__", obj), "__self__", None)
        if isinstance(text, str):
            method = obj.__name__
            if method in _REFUSED_METHODS:
                raise LimitExceeded(f"the string method {method}() is not allowed")
            if method in _WIDTH_METHODS:
                for width in (*args, *kwargs.values()):
                    _check_width(width)
            if method in ("format", "format_map"):
                _check_format(text)
            if method == "replace" and len(args) >= 2:
                _check_replaced(text, *args[:3])
            if method == "join" and args:
                pieces = list(_counted(args[0]))
                _check_joined(pieces, text)
                args = (pieces, *args[1:])
        budget = _budget.get()
        if budget is None:
            return _bounded(super().call(context, obj, *args, **kwargs))
        budget.enter()
        try:
            return _bounded(super().call(context, obj, *args, **kwargs))
        finally:
            budget.leave()

    def render_limited(self, source: str, data: Mapping[str, Any], *, max_length: int) -> str:
        """Render ``source`` on a fresh budget, stopping once it passes ``max_length``."""
        token = _budget.set(_Budget())
        try:
            pieces, length = [], 0
            for piece in self.from_string(source).generate(data):
                length += len(piece)
                if length > max_length:
                    raise LimitExceeded(f"it renders more than {max_length} characters")
                pieces.append(piece)
            return "".join(pieces)
        finally:
            _budget.reset(token)


def static_limit_problems(tree: nodes.Template, *, max_length: int) -> list[str]:
    """What a parsed template is sure to exceed, as far as its text alone tells."""
    problems = []
    if any(True for _ in tree.find_all(nodes.Pow)):
        problems.append("the ** operator is not allowed")
    literal = sum(len(data.data) for data in tree.find_all(nodes.TemplateData))
    if literal > max_length:
        problems.append(f"its text alone is {literal} characters, more than {max_length}")
    for call in tree.find_all(nodes.Call):
        is_range = isinstance(call.node, nodes.Name) and call.node.name == "range"
        bounds = [arg.value for arg in call.args if isinstance(arg, nodes.Const)]
        if is_range and bounds and len(bounds) == len(call.args):
            try:
                _range(*bounds)
            except LimitExceeded as error:
                problems.append(str(error))
            except (TypeError, ValueError):
                pass  # not a limit: rendering reports it with the data at hand
    for product in tree.find_all(nodes.Mul):
        if isinstance(product.left, nodes.Const) and isinstance(product.right, nodes.Const):
            try:
                _check_product(product.left.value, product.right.value)
            except LimitExceeded as error:
                problems.append(str(error))
    return list(dict.fromkeys(problems))
