"""When a schedule is next due: pure Python, no database, unit-tested directly.

A cron expression is read on the wall clock of the schedule's own time zone, so
`0 9 * * 1-5` means nine in the morning there, in summer and in winter alike. Changes
of the clock (daylight saving time) follow two rules, so that a schedule never runs
twice for one wall time and never silently skips a day:

- a wall time that does not exist, because the clock jumps forward over it, runs at
  the first instant after the jump; several such times (and a match at that instant
  itself) make one run;
- a wall time that happens twice, because the clock falls back, runs the first time only.

croniter walks the calendar on naive wall-clock times, where no clock change exists;
this module alone turns those times into instants.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, CroniterError, croniter

MAX_CRON_LENGTH = 100
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = "minute hour day-of-month month day-of-week"
# Wall-clock candidates skipped at most before one is an instant after `after`: every
# minute of a repeated hour (or, in a few zones' history, a repeated day) is one.
MAX_CANDIDATES = 3000


class NeverDue(ValueError):
    """The expression matches no date that will come (such as 30 February)."""


def normalize_cron(cron: str) -> str:
    """One space between fields, macros as given: what is stored and shown."""
    return " ".join(cron.split())


def _expression(cron: str) -> str:
    text = normalize_cron(cron)
    return MACROS.get(text.lower(), text)


def _unsupported(field: str) -> bool:
    """croniter's `R` (random) and `H` (hashed) values: a schedule's times must not
    depend on which process computes them."""
    return any(
        token.upper() in ("R", "H") or token.upper().startswith(("R(", "H("))
        for token in re.split(r"[,/-]", field)
    )


def cron_problem(cron: str) -> str | None:
    """What is wrong with `cron`, in words for the person who typed it; None if nothing."""
    text = normalize_cron(cron)
    example = "such as '0 3 * * *' (every day at 03:00) or '*/15 * * * 1-5'"
    if not text:
        return f"Give a cron expression of five fields ({FIELDS}), {example}."
    if len(text) > MAX_CRON_LENGTH:
        return f"A cron expression is at most {MAX_CRON_LENGTH} characters."
    expression = MACROS.get(text.lower())
    if expression is None:
        if text.startswith("@"):
            known = ", ".join(MACROS)
            return f"'{text}' is not a known shortcut; use one of {known} or five fields."
        fields = text.split(" ")
        if len(fields) != 5:
            return (
                f"A cron expression has five fields ({FIELDS}); '{text}' has {len(fields)}, "
                f"{example}."
            )
        if any(_unsupported(f) for f in fields):
            return "Random (R) and hashed (H) values are not supported: give fixed values."
        expression = text
    try:
        croniter(expression)
    except (CroniterError, ValueError, KeyError, IndexError, TypeError) as exc:
        return f"'{text}' is not a valid cron expression ({FIELDS}): {exc}"
    try:
        next_run(cron=text, timezone="UTC", after=datetime(2000, 1, 1, tzinfo=UTC))
    except NeverDue:
        return f"'{text}' never matches a date (such as 30 February)."
    return None


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # Not zones of a place: the server's own setting, and the database's placeholder.
    return frozenset(available_timezones()) - {"localtime", "Factory", "posixrules"}


def timezone_problem(name: str) -> str | None:
    """None for an IANA zone name ('UTC', 'Europe/Berlin'); else what is wrong."""
    names = _zone_names()
    if names:
        known = name in names or name == "UTC"
    else:  # no list of zones on this system: ask zoneinfo itself
        try:
            ZoneInfo(name)
            known = True
        except (ZoneInfoNotFoundError, ValueError, OSError):
            known = False
    if known:
        return None
    shown = name if len(name) <= 64 else name[:61] + "..."
    return (
        f"'{shown}' is not a time zone of the IANA database; use a name such as "
        "'UTC', 'Europe/Berlin' or 'America/New_York'."
    )


def next_run(*, cron: str, timezone: str, after: datetime) -> datetime:
    """The first instant strictly after `after` (aware) at which `cron` is due in
    `timezone`, in UTC. Raises NeverDue when there is none."""
    if after.tzinfo is None:
        raise ValueError("`after` must be an aware datetime")
    zone = ZoneInfo(timezone)
    # Whole seconds: candidates are whole minutes, so none is lost by the truncation.
    wall = after.astimezone(zone).replace(tzinfo=None, microsecond=0)
    try:
        candidates = croniter(_expression(cron), wall)
        for _ in range(MAX_CANDIDATES):
            instant = _instant(candidates.get_next(datetime), zone)
            # A candidate can lie before `after` when `after` is in the second pass of
            # a repeated hour: those wall times ran in the first pass.
            if instant > after:
                return instant
    except CroniterBadDateError as exc:
        raise NeverDue(f"'{cron}' never matches a date") from exc
    except (OverflowError, ValueError) as exc:  # past year 9999
        raise NeverDue(f"'{cron}' has no time left after {after.isoformat()}") from exc
    raise NeverDue(f"'{cron}' found no time after {after.isoformat()}")


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of the naive wall-clock time `wall` in `zone`: its first
    occurrence when the clock shows it twice, the end of the jump when never."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    return _gap_end(wall, zone)


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant whose wall time is later than `wall`, a time the clock jumps
    over. Read with the offset after the jump, `wall` is an instant before the jump;
    with the offset before it, one after: the jump lies between, found by bisection
    to the second (offsets and their changes are whole seconds)."""
    low = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    high = int(wall.replace(tzinfo=zone, fold=0).astimezone(UTC).timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
