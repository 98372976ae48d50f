"""The `--where` language of grants: a parser to a small AST and a vectorised evaluation over Arrow.

Grammar (keywords are case-insensitive; literals are text, compared as text):

    expr       := disjunct ("or" disjunct)*
    disjunct   := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | comparison
    comparison := ref ( "=" lit | "!=" lit | "in" "(" lit ("," lit)* ")" | "startswith" lit
                      | "between" lit "and" lit | "is" ["not"] "empty" )
    ref        := column | dataset "[" expr "]" "." column     (no nesting inside the brackets)
    lit        := 'quoted text' ('' inside for a quote) | digits (read as text: 44021 is '44021')

A missing value (null or empty text) satisfies only `is empty` and `!=`; every other comparison is
false on it. A related reference `d[filter].c op lit` holds for a row when the related dataset `d` has
a row about the same subject that passes `filter` and whose `c` satisfies `op lit`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mutapub.mutations.errors import InputError
from mutapub.schemas import Schema, SchemaError, load_schema

KEYWORDS = {"and", "or", "not", "in", "startswith", "between", "is", "empty"}


class PredicateError(InputError):
    """A `--where` expression cannot be parsed, or names a column or dataset that does not exist."""


# --- AST ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRef:
    """A column of the dataset the grant is on."""

    column: str


@dataclass(frozen=True)
class RelatedRef:
    """A column of a related dataset's rows about the same subject that pass `filter`."""

    dataset: str
    filter: Expr
    column: str


@dataclass(frozen=True)
class Compare:
    """`ref op values`; op is one of =, !=, in, startswith, between, empty."""

    ref: ColumnRef | RelatedRef
    op: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Not:
    """Negation."""

    expr: Expr


@dataclass(frozen=True)
class And:
    """Conjunction."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    """Disjunction."""

    items: tuple[Expr, ...]


Expr = Compare | Not | And | Or


# --- parser ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<string>'(?:[^']|'')*')
      | (?P<number>[0-9]+(?![A-Za-z_]))
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>!=|<>|=|\(|\)|\[|\]|,|\.)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, ident, keyword, op, end
    text: str
    pos: int

    @property
    def value(self) -> str:
        if self.kind == "string":
            return self.text[1:-1].replace("''", "'")
        return self.text


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] == "'":
                raise _error(text, pos, "unterminated quoted text")
            if text[pos] == '"':
                raise _error(text, pos, "text literals take single quotes ('x'), not double quotes")
            raise _error(text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            word = m.group()
            if kind == "ident" and word.lower() in KEYWORDS:
                out.append(_Token("keyword", word.lower(), pos))
            else:
                out.append(_Token("op" if kind == "op" else kind, "!=" if word == "<>" else word, pos))
        pos = m.end()
    out.append(_Token("end", "", len(text)))
    return out


def _error(text: str, pos: int, message: str) -> PredicateError:
    near = "end of text" if pos >= len(text) else repr(text[pos : pos + 20])
    return PredicateError(f"cannot parse --where {text!r}: {message} at position {pos + 1} (near {near})")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, expected: str) -> PredicateError:
        return _error(self.text, self.tok.pos, f"expected {expected}")

    def accept(self, kind: str, text: str) -> bool:
        if self.tok.kind == kind and self.tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, kind: str, text: str, what: str) -> None:
        if not self.accept(kind, text):
            raise self.fail(what)

    def parse(self) -> Expr:
        if self.tok.kind == "end":
            raise self.fail("an expression")
        expr = self.expr(nested=False)
        if self.tok.kind != "end":
            raise self.fail("end of expression, 'and' or 'or'")
        return expr

    def expr(self, nested: bool) -> Expr:
        items = [self.disjunct(nested)]
        while self.accept("keyword", "or"):
            items.append(self.disjunct(nested))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def disjunct(self, nested: bool) -> Expr:
        items = [self.unary(nested)]
        while self.accept("keyword", "and"):
            items.append(self.unary(nested))
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self, nested: bool) -> Expr:
        if self.accept("keyword", "not"):
            return Not(self.unary(nested))
        if self.accept("op", "("):
            inner = self.expr(nested)
            self.expect("op", ")", "')'")
            return inner
        return self.comparison(nested)

    def ref(self, nested: bool) -> ColumnRef | RelatedRef:
        if self.tok.kind != "ident":
            raise self.fail("a column name")
        name = self.take().text
        if not self.accept("op", "["):
            return ColumnRef(name)
        if nested:
            raise _error(self.text, self.tokens[self.i - 1].pos, "a related dataset inside a related filter")
        flt = self.expr(nested=True)
        self.expect("op", "]", "']'")
        self.expect("op", ".", "'.' and a column of " + name)
        if self.tok.kind != "ident":
            raise self.fail(f"a column of {name}")
        return RelatedRef(name, flt, self.take().text)

    def literal(self) -> str:
        if self.tok.kind in ("string", "number"):
            return self.take().value
        raise self.fail("a quoted text or digits")

    def comparison(self, nested: bool) -> Expr:
        ref = self.ref(nested)
        if self.accept("op", "="):
            return Compare(ref, "=", (self.literal(),))
        if self.accept("op", "!="):
            return Compare(ref, "!=", (self.literal(),))
        if self.accept("keyword", "startswith"):
            return Compare(ref, "startswith", (self.literal(),))
        if self.accept("keyword", "in"):
            self.expect("op", "(", "'(' after 'in'")
            values = [self.literal()]
            while self.accept("op", ","):
                values.append(self.literal())
            self.expect("op", ")", "',' or ')'")
            return Compare(ref, "in", tuple(values))
        if self.accept("keyword", "between"):
            low = self.literal()
            self.expect("keyword", "and", "'and' in 'between … and …'")
            return Compare(ref, "between", (low, self.literal()))
        if self.accept("keyword", "is"):
            negate = self.accept("keyword", "not")
            self.expect("keyword", "empty", "'empty' after 'is'")
            cmp = Compare(ref, "empty")
            return Not(cmp) if negate else cmp
        raise self.fail("=, !=, in, startswith, between or is empty")


def parse(text: str) -> Expr:
    """Parse one `--where` expression; PredicateError names the offending text and its position."""
    return _Parser(text).parse()


# --- checks against schemas ----------------------------------------------------------------------


def refs(expr: Expr) -> list[ColumnRef | RelatedRef]:
    """Every column reference in `expr` (related references once, not their filters)."""
    if isinstance(expr, Compare):
        return [expr.ref]
    if isinstance(expr, Not):
        return refs(expr.expr)
    return [r for item in expr.items for r in refs(item)]


def related_datasets(expr: Expr) -> set[str]:
    """Names of the related datasets `expr` reads."""
    return {r.dataset for r in refs(expr) if isinstance(r, RelatedRef)}


def _subject_kind(schema: Schema) -> str:
    col = schema.column(schema.subject)
    return col.validator or f"column:{col.name}"


def check(expr: Expr, schema: Schema, text: str) -> None:
    """Refuse references to columns or related datasets that do not exist or do not share the subject."""

    def column(s: Schema, name: str, where: str) -> None:
        if name not in s.column_names:
            raise PredicateError(
                f"--where {text!r}: {where} has no column {name!r} (columns: {', '.join(s.column_names)})"
            )

    for ref in refs(expr):
        if isinstance(ref, ColumnRef):
            column(schema, ref.column, f"dataset {schema.name}")
            continue
        try:
            other = load_schema(ref.dataset)
        except SchemaError as exc:
            raise PredicateError(f"--where {text!r}: {exc}") from exc
        if _subject_kind(other) != _subject_kind(schema):
            raise PredicateError(
                f"--where {text!r}: related dataset {ref.dataset} is about {other.subject}, "
                f"not the subject {schema.subject} of {schema.name}"
            )
        column(other, ref.column, f"related dataset {ref.dataset}")
        for inner in refs(ref.filter):
            assert isinstance(inner, ColumnRef)  # the parser refuses nesting
            column(other, inner.column, f"related dataset {ref.dataset}")


def compile_where(text: str, schema: Schema) -> Expr:
    """Parse and check one `--where` expression of a grant on `schema`."""
    expr = parse(text)
    check(expr, schema, text)
    return expr


# --- evaluation ----------------------------------------------------------------------------------

# A related dataset as evaluation needs it: its table and the name of its subject column.
Related = Mapping[str, tuple[pa.Table, str]]


def as_text(table: pa.Table, column: str) -> pa.ChunkedArray:
    """A column of `table` as text (dates in ISO 8601); PredicateError naming it when absent."""
    if column not in table.column_names:
        raise PredicateError(
            f"column {column!r} is not in the table (columns: {', '.join(table.column_names)})"
        )
    col = table.column(column)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col if col.type == pa.string() else col.cast(pa.string())


def to_mask(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow array as a numpy mask, null counting as false."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _compare(col: pa.ChunkedArray, op: str, values: tuple[str, ...]) -> np.ndarray:
    if op == "=":
        return to_mask(pc.equal(col, values[0]))
    if op == "!=":
        return ~to_mask(pc.equal(col, values[0]))
    if op == "in":
        return to_mask(pc.is_in(col, value_set=pa.array(values, pa.string())))
    if op == "startswith":
        return to_mask(pc.starts_with(col, pattern=values[0]))
    if op == "between":
        return to_mask(pc.greater_equal(col, values[0])) & to_mask(pc.less_equal(col, values[1]))
    if op == "empty":
        return np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool) | to_mask(
            pc.equal(col, "")
        )
    raise ValueError(f"unknown operator {op}")


def evaluate(
    expr: Expr, table: pa.Table, subject: str | None = None, related: Related | None = None
) -> np.ndarray:
    """A boolean mask of the rows of `table` for which `expr` holds; vectorised, no per-row Python."""
    if isinstance(expr, Not):
        return ~evaluate(expr.expr, table, subject, related)
    if isinstance(expr, And | Or):
        combine: Callable[[np.ndarray, np.ndarray], np.ndarray] = (
            np.logical_and if isinstance(expr, And) else np.logical_or
        )
        masks = [evaluate(item, table, subject, related) for item in expr.items]
        out = masks[0]
        for m in masks[1:]:
            out = combine(out, m)
        return out
    ref = expr.ref
    if isinstance(ref, ColumnRef):
        return _compare(as_text(table, ref.column), expr.op, expr.values)
    if related is None or ref.dataset not in related:
        raise PredicateError(f"the related dataset {ref.dataset} was not given to evaluate a predicate on it")
    if subject is None:
        raise PredicateError("a related-dataset predicate needs the subject column of the table")
    other, other_subject = related[ref.dataset]
    hit = evaluate(ref.filter, other) & _compare(as_text(other, ref.column), expr.op, expr.values)
    subjects = as_text(other, other_subject).filter(pa.array(hit))
    return to_mask(pc.is_in(as_text(table, subject), value_set=pc.unique(subjects)))
