"""Per-item accounting of a destructive run: every approved item ends carried out, not carried out, or unknown.

The answer for one request comes from `ApiError.fate` (clients/errors.py), and `after_read_back`
combines it with what a read-back saw: gone is carried out, unless the request was refused; still
there is unknown, unless it was refused — never "not carried out" for an item whose request may yet be
executed, and the outcome says how to check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from purgewarden.clients.errors import Fate

FATES: tuple[Fate, ...] = ("carried_out", "not_carried_out", "unknown")
SAMPLE = 5
"""Ids kept per fate, to name examples without growing with the run."""
MAY_YET_HAPPEN = (
    "it may yet be carried out: the request was sent and its answer lost, so the API may still act on it"
)


def after_read_back(fate: Fate, still_present: bool | None) -> Fate:
    """One item's fate, from its request's fate and a read-back (None: not read back).

    Gone after a request that may have happened: carried out. Still there after one that may have
    happened, even one the API confirmed: unknown, since it may yet be acted on. A refusal stays a
    refusal (an item gone meanwhile went elsewhere)."""
    if fate == "not_carried_out" or still_present is None:
        return fate
    return "unknown" if still_present else "carried_out"


@dataclass
class Ledger:
    """Counts per fate, with a few examples each ("id: why") for the audit log; bounded whatever the run."""

    counts: dict[Fate, int] = field(default_factory=lambda: dict.fromkeys(FATES, 0))
    samples: dict[Fate, list[str]] = field(default_factory=lambda: {f: [] for f in FATES})
    unjournaled: list[dict[str, Any]] = field(default_factory=list)
    """Settlements not yet written to the run's journal (`drain` hands them over)."""

    def settle(self, fate: Fate, ids: Iterable[str] = (), *, count: int | None = None, why: str = "") -> None:
        """Record `ids` (or an anonymous `count` of items) as having met `fate`."""
        listed = list(ids)
        self.counts[fate] += len(listed) if count is None else count
        room = SAMPLE - len(self.samples[fate])
        if room > 0:
            self.samples[fate].extend(f"{item}: {why}" if why else item for item in listed[:room])
        if listed or count:
            self.unjournaled.append(
                {"fate": fate, "ids": listed} if count is None else {"fate": fate, "count": count}
            )

    def drain(self) -> list[dict[str, Any]]:
        drained, self.unjournaled = self.unjournaled, []
        return drained

    @property
    def settled(self) -> int:
        return sum(self.counts.values())

    def totals(self) -> dict[str, int]:
        return {fate: self.counts[fate] for fate in FATES}


@dataclass(frozen=True)
class BeyondPlan:
    """Items an "empty everything" call destroyed that were not in the approved plan."""

    items: Mapping[str, str]
    """id → what the API told about the item when it was last seen (quoted text)."""

    @property
    def count(self) -> int:
        return len(self.items)

    def note(self) -> str:
        one = self.count == 1
        shown = "; ".join(f"{i}: {what}" for i, what in sorted(self.items.items())[:SAMPLE])
        return (
            f"{self.count} item{'' if one else 's'} that arrived after the approval and "
            f"{'was' if one else 'were'} not in the plan {'was' if one else 'were'} destroyed by the same call "
            f"(the API can only empty everything): {shown}."
        )
