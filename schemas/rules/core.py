"""Rule-free machinery of the catalog: severities, levels, the ``Rule`` entry and the decorators that register one.

A rule module (``schemas/rules/<family>.py``) declares each rule once with ``line_rule``, ``claim_rule`` or
``file_rule``: its catalog entry, its predicate (the pandera check that decides it), how a failing row
is shown, and its examples. Nothing here names a rule.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


SEVERITY_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


class Level(StrEnum):
    FILE = "file"  # raised by ingest for the whole file
    CELL = "cell"  # raised by ingest for one cell
    LINE = "line"  # decided on every claim line (schemas.claims.ClaimLines)
    CLAIM = "claim"  # decided once per claim (schemas.claims.ClaimFacts)


@dataclass(frozen=True)
class Edit:
    """One change to the clean sample claim: ``kind`` is "set" (line ``line``), "all", "add" or "keep"."""

    kind: str
    line: int | tuple[int, ...] | None = None
    values: dict = field(default_factory=dict)


def on(line: int, **values) -> Edit:
    """Set columns of line ``line`` (0: the 64612 line, 1: the toxin line) of the clean claim."""
    return Edit("set", line, values)


def every(**values) -> Edit:
    """Set columns on every line of the claim."""
    return Edit("all", None, values)


def add(**values) -> Edit:
    """Add a line to the claim (a copy of its first line with these columns)."""
    return Edit("add", None, values)


def keep(*lines: int) -> Edit:
    """Keep only these lines of the claim."""
    return Edit("keep", lines)


def prior(**values) -> Edit:
    """Put an earlier clean claim of the same patient (claim id + "-PREV") before this one (history rules)."""
    return Edit("prior", None, values)


@dataclass(frozen=True)
class Examples:
    """A claim that fires the rule and a near miss that does not: edits of the clean sample claim.

    ``value`` is the offending value the firing claim's finding shows (None: not asserted)."""

    fires: tuple[Edit, ...]
    quiet: tuple[Edit, ...]
    value: str | None = None
    fires_profile: dict = field(default_factory=dict)  # payer-profile settings the firing claim is scrubbed with
    quiet_profile: dict = field(default_factory=dict)
    sampled: bool = True  # ``claimscrub sample`` may plant the firing edits in a synthetic file


def examples(fires, quiet, value: str | None = None, fires_profile: dict | None = None,
             quiet_profile: dict | None = None, sampled: bool = True) -> Examples:
    """``Examples`` from lists of edits (an empty list: the clean claim itself)."""
    return Examples(tuple(fires), tuple(quiet), value, fires_profile or {}, quiet_profile or {}, sampled)


@dataclass(frozen=True)
class Rule:
    """One catalog entry. ``needs``: the optional columns without which the rule is *not checked*."""

    id: str
    severity: Severity
    level: Level
    title: str
    message: str  # reviewer-facing; may use {value}
    fix: str
    source: str  # public documents a reviewer can look up
    field: str | None = None
    checks: str = ""  # plain-language "what it checks"
    needs: tuple[str, ...] = ()
    predicate: Callable | None = None  # frame -> Series[bool], True = passes
    reads: tuple[str, ...] = ()  # claim facts the predicate reads (declared on ClaimFacts)
    value: str | None = None  # claim rules: the fact column shown as the finding's value
    anchor: str = "first_index"  # claim rules: the fact column naming the line a finding points at
    severity_from: str | None = None  # a fact column holding a row-dependent severity (catalog says so)
    blank_ok: bool = False  # an empty value is part of the sentence, not a missing value
    detail: Callable | None = None  # line rules: (rows, lines) -> (field, value); claim rules: rows -> value
    detail_columns: tuple[str, ...] = ()  # the columns of the failing rows the detail reads
    note: Callable | None = None  # line rules: failing rows -> text said after the message (never in the value)
    note_columns: tuple[str, ...] = ()
    severity_of: Callable | None = None  # claim rules: failing rows -> severity per row (catalog says so)
    severity_columns: tuple[str, ...] = ()
    offending_lines: Callable | None = None  # claim rules: (lines, features, groups, claims) -> line mask
    line_fact: str | None = None  # the claim fact derive makes of that mask: the offending lines' values
    line_shows: str | None = None  # the line column whose values the fact joins
    line_blank: str = ""  # how a blank value reads in that fact
    line_texts: Callable | None = None  # claim rules: (lines, features, groups, claims) -> (positions, texts)
    line_reads_tables: bool = False  # those line functions read the reference-table facts (pipeline/lookups.py)
    examples: Examples | None = None
    tables: tuple[str, ...] = ()  # reference tables (pipeline/reference.py kinds) the rule is decided on
    reach: Callable | None = None  # claim rules with optional columns: claim facts -> claims it could fire on


REGISTRY: dict[str, Rule] = {}


def passes_unless(df, fault):
    """A G51.33 claim rule's check: every claim passes but an in-scope one with the fault."""
    return ~(df["in_scope"] & fault)


def _register(rule: Rule) -> Rule:
    if rule.id in REGISTRY:
        raise ValueError(f"rule {rule.id} registered twice")
    REGISTRY[rule.id] = rule
    return rule


class RuleFunction:
    """What the decorators return: the predicate, callable as before, plus ``.detail``."""

    def __init__(self, rule_id: str, fn: Callable):
        self.rule_id, self.fn = rule_id, fn
        self.__doc__, self.__name__ = fn.__doc__, fn.__name__

    def __call__(self, frame):
        return self.fn(frame)

    def detail(self, columns: tuple[str, ...] = ()):
        """Register how a failing row is shown, run on the failing rows only (their ``columns``): a line rule's
        ``fn(rows, lines) -> (field, value)``, a claim rule's ``fn(rows) -> value``."""
        def wrap(fn: Callable) -> Callable:
            REGISTRY[self.rule_id] = replace(REGISTRY[self.rule_id], detail=fn, detail_columns=tuple(columns))
            return fn
        return wrap

    def note(self, columns: tuple[str, ...] = ()):
        """Register a line rule's note, ``fn(rows) -> text per failing row``, said in brackets after the message:
        what the reviewer needs to read the finding right (say, the payer profile's limit) that is not part of
        the value (the value is part of the exception id, which must not change when a setting does)."""
        def wrap(fn: Callable) -> Callable:
            REGISTRY[self.rule_id] = replace(REGISTRY[self.rule_id], note=fn, note_columns=tuple(columns))
            return fn
        return wrap

    def lines(self, fact: str, shows: str, blank: str = "", tables: bool = False):
        """Register the lines at fault, ``fn(lines, features, groups, claims) -> bool per line`` (``claims``: the
        claim facts derived so far, by name: ``claims[name]`` is a Series over the claims, as in a DataFrame,
        but ``claims`` is not one: ``pipeline.derive.Columns``). derive makes
        two claim facts of it, rule-free: ``fact`` (the distinct ``shows`` values of those lines, joined) and
        ``fact + "_at"`` (the first such line's label). ``tables``: ``fn`` reads the per-line reference-table
        facts (``pipeline/lookups.py``: MUE, PTP, code sets), which derive has only after the other facts."""
        def wrap(fn: Callable) -> Callable:
            REGISTRY[self.rule_id] = replace(REGISTRY[self.rule_id], offending_lines=fn, line_fact=fact,
                                             line_shows=shows, line_blank=blank, line_reads_tables=tables)
            return fn
        return wrap

    def texts(self, fact: str, tables: bool = False):
        """Register per-line texts of what is wrong, ``fn(lines, features, groups, claims) -> (positions,
        texts)`` ("" = nothing wrong; ``claims`` as for ``lines``). derive makes the claim fact ``fact`` of them, rule-free: each claim's
        distinct texts in line order, joined with '; ' (and ``fact + "_at"``, the first such line's label).
        ``tables``: as for ``lines``."""
        def wrap(fn: Callable) -> Callable:
            REGISTRY[self.rule_id] = replace(REGISTRY[self.rule_id], line_texts=fn, line_fact=fact,
                                             line_reads_tables=tables)
            return fn
        return wrap

    def severity(self, columns: tuple[str, ...] = ()):
        """Register a row-dependent severity, ``fn(rows) -> severity per failing row`` (where the catalog says so)."""
        def wrap(fn: Callable) -> Callable:
            REGISTRY[self.rule_id] = replace(REGISTRY[self.rule_id], severity_of=fn, severity_columns=tuple(columns))
            return fn
        return wrap


def _decorator(rule_id: str, severity: Severity, level: Level, **entry):
    def wrap(fn: Callable) -> RuleFunction:
        _register(Rule(rule_id, severity, level, predicate=fn, **entry))
        return RuleFunction(rule_id, fn)
    return wrap


def line_rule(rule_id: str, severity: Severity, *, title: str, checks: str, message: str, fix: str, source: str,
              field: str | None = None, needs: tuple[str, ...] = (), examples: Examples | None = None,
              tables: tuple[str, ...] = ()):
    """A rule decided on every claim line: the decorated predicate reads the lines frame (``tables``: the reference
    tables it is decided on, named in the Summary, as for ``claim_rule``)."""
    return _decorator(rule_id, severity, Level.LINE, title=title, checks=checks, message=message, fix=fix,
                      source=source, field=field, needs=tuple(needs), examples=examples, tables=tuple(tables))


def claim_rule(rule_id: str, severity: Severity, *, title: str, checks: str, message: str, fix: str, source: str,
               reads: tuple[str, ...], field: str | None = None, needs: tuple[str, ...] = (),
               value: str | None = None, anchor: str = "first_index", severity_from: str | None = None,
               blank_ok: bool = False, examples: Examples | None = None, tables: tuple[str, ...] = (),
               reach: Callable | None = None):
    """A rule decided once per claim: the decorated predicate reads the claim facts named in ``reads``;
    ``tables``: the reference tables it is decided on (a date of service none covers: not checked there);
    ``reach``: which claims the rule could fire on, from facts that need none of ``needs`` (a file whose
    claims are all out of its reach does not lack the rule's columns: nothing is left unchecked)."""
    return _decorator(rule_id, severity, Level.CLAIM, title=title, checks=checks, message=message, fix=fix,
                      source=source, field=field, needs=tuple(needs), reads=tuple(reads), value=value,
                      anchor=anchor, severity_from=severity_from, blank_ok=blank_ok, examples=examples,
                      tables=tuple(tables), reach=reach)


def file_rule(rule_id: str, severity: Severity, level: Level, *, title: str, checks: str, message: str, fix: str,
              source: str, field: str | None = None, examples: Examples | None = None) -> Rule:
    """A file or cell rule: raised by ingest, so the entry has no predicate here."""
    return _register(Rule(rule_id, severity, level, title=title, checks=checks, message=message, fix=fix,
                          source=source, field=field, examples=examples))
