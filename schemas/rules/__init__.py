"""The rule catalog: one module per family, each rule's entry, predicate, detail and examples together.

Ids come from the specification and never change. Severity lives in the entries (and in config overrides),
never in pandera's ``error=`` or ``raise_warning``. Importing the family modules registers their rules;
the catalog lists them by area (file, cell, structure, G51.33), then number.
"""

from schemas.rules import (  # importing a family registers its rules
    diagnosis,
    documentation,
    file,
    guidance,
    history,
    procedure,
    sites,
    structure,
    toxin,
)
from schemas.rules.core import REGISTRY, SEVERITY_RANK, Level, Rule, Severity

CATALOG_VERSION = "2026.11.1"
FAMILIES = (file, structure, diagnosis, procedure, toxin, sites, guidance, documentation, history)

_AREAS = ("FILE", "ING", "STR", "HFS")
RULES: tuple[Rule, ...] = tuple(sorted(REGISTRY.values(), key=lambda r: (_AREAS.index(r.id.split("-")[0]), r.id)))
RULES_BY_ID: dict[str, Rule] = dict(REGISTRY)
LINE_RULES: tuple[Rule, ...] = tuple(r for r in RULES if r.level == Level.LINE)
CLAIM_RULES: tuple[Rule, ...] = tuple(r for r in RULES if r.level == Level.CLAIM)


def family_of(rule_id: str) -> str:
    """The family module (``structure``, ``toxin``...) that holds a rule."""
    module = RULES_BY_ID[rule_id].predicate.__module__ if RULES_BY_ID[rule_id].predicate else file.__name__
    return module.rsplit(".", 1)[-1]


__all__ = ["CATALOG_VERSION", "CLAIM_RULES", "FAMILIES", "LINE_RULES", "RULES", "RULES_BY_ID", "SEVERITY_RANK",
           "Level", "Rule", "Severity", "family_of"]
