"""One attribute value with where it came from: the catalogue feed, a model's prediction, or shopper text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# feed: the catalogue said so; predicted: colour from pixels or zero-shot; model: a trained attribute head
# (fashion-net-v3, calibrated confidence); text: the shopper's words.
Source = Literal["feed", "predicted", "model", "text"]
SOURCES: tuple[str, ...] = ("feed", "predicted", "model", "text")
# The garment category, scored and recorded like an attribute group (not a taxonomy group).
CATEGORY_GROUP = "category"


@dataclass(frozen=True)
class AttributeGuess:
    """`alternatives` holds further values of a multi-valued group (the second dominant colour)."""

    value: str
    confidence: float
    source: Source
    alternatives: tuple[str, ...] = field(default=())

    def values(self) -> tuple[str, ...]:
        return (self.value, *self.alternatives)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"value": self.value, "confidence": self.confidence, "source": self.source}
        if self.alternatives:
            data["alternatives"] = list(self.alternatives)
        return data

    @classmethod
    def from_json(cls, data: Any) -> AttributeGuess:
        source = data.get("source", "feed")
        return cls(
            str(data["value"]),
            float(data.get("confidence", 1.0)),
            source if source in SOURCES else "feed",
            tuple(str(v) for v in data.get("alternatives", ())),
        )
