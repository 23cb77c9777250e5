"""Every number in an insights narrative must be one of the hub's: the model writes words, the
hub owns the figures.

:func:`numbers_of` finds the numbers a text quotes (``1.5``, ``25%``, ``$125,000``,
``-3.2 %``); :func:`hub_numbers` lists what the hub's key figures allow -- each ratio as a
fraction and as a percentage, each amount, and the period's dates -- and a quoted number
agrees with one of them when it equals it rounded to the quoted number's own decimals
(``25.3%`` agrees with a margin of ``0.2533``). A narrative item (the summary's sentences, a
strength, a concern, a recommendation) that quotes any other number is removed from the
answer and reported in its ``flags``: the narrative is kept, never a number the model made up.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from hub.model import KeyFigures

NUMBER_RE = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?|(?<![\w.])-?\d+(?:\.\d+)?\s?%?")
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")


def numbers_of(text: str) -> list[tuple[str, Decimal, bool]]:
    """The numbers ``text`` quotes: (as written, value, written as a percentage)."""
    found = []
    for match in NUMBER_RE.finditer(text):
        written = match.group(0).strip()
        percent = written.endswith("%")
        try:
            value = Decimal(written.rstrip("%").strip().replace(",", ""))
        except InvalidOperation:
            continue
        found.append((written, value, percent))
    return found


def hub_numbers(figures: KeyFigures) -> tuple[list[Decimal], list[Decimal]]:
    """The values a narrative may quote: (plain numbers, percentages)."""
    plain: list[Decimal] = [amount for amount in figures.amounts.values()]
    percents: list[Decimal] = []
    for value in figures.figures.values():
        if value is not None:
            plain.append(value)
            percents.append(value * 100)
    for day in (figures.period_start, figures.period_end):
        plain.extend(Decimal(part) for part in (day.year, day.month, day.day))
    return plain, percents


def _agrees(value: Decimal, allowed: list[Decimal]) -> bool:
    """``value`` equals one of ``allowed`` rounded to ``value``'s decimals (sign aside: "fell
    3.2 %" quotes a growth of -0.032)."""
    exponent = value.as_tuple().exponent
    places = Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)
    return any(
        abs(candidate.quantize(places, ROUND_HALF_UP)) == abs(value) for candidate in allowed
    )


def foreign_numbers(text: str, figures: KeyFigures) -> list[str]:
    """The numbers ``text`` quotes that are not the hub's (as written)."""
    plain, percents = hub_numbers(figures)
    return [
        written
        for written, value, percent in numbers_of(text)
        if not _agrees(value, percents if percent else plain + percents)
    ]


def ground(
    narrative: dict[str, Any], figures: KeyFigures
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The narrative without the items quoting numbers the hub does not have, and the flags
    saying what was removed.

    :param narrative: the validated answer as JSON (``summary`` text, list fields of text).
    """
    kept: dict[str, Any] = {}
    flags: list[dict[str, Any]] = []

    def keep(where: str, text: str) -> bool:
        foreign = foreign_numbers(text, figures)
        if foreign:
            flags.append(
                {"check": "foreign_number", "field": where, "numbers": foreign, "removed": text}
            )
        return not foreign

    for name, value in narrative.items():
        if name == "summary":
            sentences = SENTENCE_RE.split(value)
            kept[name] = " ".join(
                s for i, s in enumerate(sentences) if keep(f"summary (sentence {i + 1})", s)
            )
        elif isinstance(value, list):
            kept[name] = [item for i, item in enumerate(value) if keep(f"{name}[{i}]", item)]
        else:
            kept[name] = value
    return kept, flags
