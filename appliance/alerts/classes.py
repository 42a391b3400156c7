"""Alert classes: what each area can raise, declared next to the code that watches the condition.

A class has a name (``rpo.stale``), a default level, a category (the area: ``rpo``, ``pool``, ``jobs``,
``channels``), a short title and a message template filled from keyword parameters at raise time. The
registry lets the UI, the API and the documentation list every alert the appliance can raise.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

LEVELS = ("info", "warning", "critical")


@dataclass(frozen=True)
class AlertClass:
    name: str
    level: str
    category: str
    title: str
    template: str

    def fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.template) if f}

    def message(self, **params: Any) -> str:
        missing = self.fields() - set(params)
        if missing:
            raise KeyError(f"alert class {self.name} needs {', '.join(sorted(missing))}")
        return self.template.format(**params)

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "level": self.level,
            "category": self.category,
            "title": self.title,
            "template": self.template,
        }


REGISTRY: dict[str, AlertClass] = {}


def declare(name: str, *, level: str, category: str, title: str, template: str) -> AlertClass:
    """Declare (once per name) an alert class; returns it for the area to raise."""
    if level not in LEVELS:
        raise ValueError(f"alert class {name}: level {level!r} must be one of {', '.join(LEVELS)}")
    cls = AlertClass(name, level, category, title, template)
    known = REGISTRY.get(name)
    if known is not None and known != cls:
        raise RuntimeError(f"alert class {name} declared twice, differently")
    REGISTRY[name] = cls
    return cls


def all_classes() -> list[AlertClass]:
    return sorted(REGISTRY.values(), key=lambda c: (c.category, c.name))
