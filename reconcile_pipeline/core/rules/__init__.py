"""The app's rules for the derived fields, as named, versioned rule sets (docs/CONTRACT.md,
"Rule sets"): one module per rule set, named by the date of the app's rules.

A run picks one: by default the rules of the app that wrote the database's schema generation
(gen 1 was written by the app of 2026-02, gen 2 and 3 are read by today's app), or the one the
``RECONCILE_RULE_SET`` setting names. Each snapshot row records the rule set that derived it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any

from reconcile_pipeline.core.rules import rules_2026_02, rules_2026_08

AUTO = "auto"
# Rows written before rule sets existed were derived by the contract's rules.
LEGACY = rules_2026_02.NAME


@dataclass(frozen=True)
class RuleSet:
    name: str  # the date of the app's rules, e.g. "2026-08"
    app_commit: str  # the factory-factory commit the rules were read from
    derive: Callable[[Mapping[str, Any]], dict[str, Any]]
    pending_request_type: Callable[[Sequence[tuple[str, Mapping | None] | None]], str | None]
    session_working: Callable[[Mapping[str, Any]], bool]

    @classmethod
    def of(cls, module: ModuleType) -> RuleSet:
        return cls(
            name=module.NAME,
            app_commit=module.APP_COMMIT,
            derive=module.derive,
            pending_request_type=module.pending_request_type,
            session_working=module.session_working,
        )

    @property
    def label(self) -> str:
        return f"{self.name} (factory-factory {self.app_commit})"


RULE_SETS: Mapping[str, RuleSet] = MappingProxyType(
    {m.NAME: RuleSet.of(m) for m in (rules_2026_02, rules_2026_08)}
)
NAMES: tuple[str, ...] = tuple(RULE_SETS)
LATEST = rules_2026_08.NAME


def default_for_generation(generation: int) -> str:
    """The rules of the app that reads a database of ``generation``."""
    return rules_2026_02.NAME if generation <= 1 else rules_2026_08.NAME


def resolve(setting: str, generation: int) -> str:
    """The rule set a run applies: ``setting`` is "auto" or a rule set's name."""
    if setting == AUTO:
        return default_for_generation(generation)
    if setting not in RULE_SETS:
        raise ValueError(f"unknown rule set {setting!r}; expected {AUTO!r} or one of {list(NAMES)}")
    return setting


def derive(row: Mapping[str, Any], rule_set: str | None) -> dict[str, Any]:
    """The derived columns of ``row`` under ``rule_set`` (None: the legacy rules)."""
    return RULE_SETS[rule_set or LEGACY].derive(row)
