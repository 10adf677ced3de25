"""The rule catalog: one module per family, each rule's entry, predicate, detail and examples together.

Ids come from the specification and never change. Severity lives in the entries (and in config overrides),
never in pandera's ``error=`` or ``raise_warning``. Importing the family modules registers their rules;
the catalog lists them by area (file, cell, structure, G51.33), then number.
"""

from schemas.rules import (  # importing a family registers its rules
    codes,
    diagnosis,
    documentation,
    file,
    guidance,
    history,
    ndc,
    payer_edits,
    procedure,
    sites,
    structure,
    toxin,
)
from schemas.rules.core import REGISTRY, SEVERITY_RANK, Level, Rule, Severity

CATALOG_VERSION = "2026.11.1"
FAMILIES = (file, structure, payer_edits, codes, ndc, diagnosis, procedure, toxin, sites, guidance, documentation,
            history)

_AREAS = ("FILE", "ING", "STR", "MUE", "PTP", "CODE", "NDC", "HFS")
RULES: tuple[Rule, ...] = tuple(sorted(REGISTRY.values(), key=lambda r: (_AREAS.index(r.id.split("-")[0]), r.id)))
RULES_BY_ID: dict[str, Rule] = dict(REGISTRY)
LINE_RULES: tuple[Rule, ...] = tuple(r for r in RULES if r.level == Level.LINE)
CLAIM_RULES: tuple[Rule, ...] = tuple(r for r in RULES if r.level == Level.CLAIM)


def family_of(rule_id: str) -> str:
    """The family module (``structure``, ``toxin``...) that holds a rule."""
    module = RULES_BY_ID[rule_id].predicate.__module__ if RULES_BY_ID[rule_id].predicate else file.__name__
    return module.rsplit(".", 1)[-1]


_FAMILY_TITLES = {
    "file": "File and cell (raised by ingest)", "structure": "Structure (every line)",
    "payer_edits": "Payer edits: NCCI unit limits and procedure pairs (every claim)",
    "codes": "Code sets on the date of service (every claim)",
    "diagnosis": "G51.33 claims: diagnosis", "procedure": "G51.33 claims: procedure and bilateral billing",
    "toxin": "G51.33 claims: toxin drug lines", "sites": "G51.33 claims: injection sites",
    "guidance": "G51.33 claims: guidance and bundled codes", "documentation": "G51.33 claims: documentation flags",
    "history": "G51.33 claims: history and setting", "ndc": "Payer edits: NDC and product (every claim)",
}


def catalog_markdown() -> str:
    """The catalog as the Markdown of ``docs/RULES.md`` (``python -m schemas.rules > docs/RULES.md``)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = [f"# claimscrub rule catalog {CATALOG_VERSION}", "",
           "Generated from `schemas/rules/` by `python -m schemas.rules > docs/RULES.md`; do not edit by hand "
           "(a test fails when this file is stale). Severity is the default; a configuration or payer profile "
           "may override it. *Needs*: without these columns the rule is reported as not checked for the file.",
           ""]
    for family in FAMILIES:
        name = family.__name__.rsplit(".", 1)[-1]
        rules = [r for r in RULES if family_of(r.id) == name]
        out += [f"## {_FAMILY_TITLES[name]}", "", f"Module: `schemas/rules/{name}.py`", "",
                "| id | severity | title | what it checks | fix | needs | source |", "|---|---|---|---|---|---|---|"]
        for r in rules:
            needs = ", ".join(f"`{c}`" for c in r.needs)
            out.append(f"| {r.id} | {r.severity.value} | {cell(r.title)} | {cell(r.checks)} | {cell(r.fix)} | "
                       f"{needs} | {cell(r.source)} |")
        out.append("")
    return "\n".join(out)


__all__ = ["CATALOG_VERSION", "CLAIM_RULES", "FAMILIES", "LINE_RULES", "RULES", "RULES_BY_ID", "SEVERITY_RANK",
           "Level", "Rule", "Severity", "catalog_markdown", "family_of"]
