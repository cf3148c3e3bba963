"""schedules/timing.py: when a cron expression is next due, on a zone's wall clock.

No database. The daily-cron property compares with an oracle that knows nothing of
croniter or of the module's gap search: it walks the clock minute by minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.timing import NeverDue, cron_problem, next_run, normalize_cron, timezone_problem

# Zones with clock changes of every kind: none, one hour, half an hour (Lord Howe),
# at midnight (Sao Paulo until 2019), a skipped day (Apia, 2011-12-30), negative
# summer time (Casablanca, Dublin), quarter-hour offsets (Chatham).
ZONES = [
    "UTC",
    "Europe/Berlin",
    "Europe/Dublin",
    "America/New_York",
    "America/Sao_Paulo",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "Pacific/Apia",
    "Pacific/Chatham",
    "Africa/Casablanca",
    "Asia/Kolkata",
    "Asia/Tehran",
]


def at(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)


def runs(cron: str, zone: str, after: datetime, count: int) -> list[str]:
    """The next `count` due times, as local ISO strings with their offsets."""
    out = []
    for _ in range(count):
        after = next_run(cron=cron, timezone=zone, after=after)
        out.append(after.astimezone(ZoneInfo(zone)).isoformat(timespec="minutes"))
    return out


# --- examples -------------------------------------------------------------------------


def test_plain_times_in_utc_and_strictly_after():
    after = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    assert next_run(cron="0 * * * *", timezone="UTC", after=after) == after + timedelta(hours=1)
    assert next_run(cron="*/15 * * * *", timezone="UTC", after=after + timedelta(microseconds=1))
    assert next_run(cron="0 10 * * *", timezone="UTC", after=after) == datetime(
        2030, 1, 2, 10, 0, tzinfo=UTC
    )
    result = next_run(cron="0 9 * * 1-5", timezone="Europe/Berlin", after=after)
    assert result.tzinfo is UTC and result == datetime(2030, 1, 2, 8, 0, tzinfo=UTC)


def test_a_skipped_wall_time_runs_once_at_the_end_of_the_jump():
    # Berlin, 2024-03-31: 02:00 CET becomes 03:00 CEST; 02:30 never happens that day.
    assert runs("30 2 * * *", "Europe/Berlin", at("Europe/Berlin", 2024, 3, 30, 12), 2) == [
        "2024-03-31T03:00+02:00",
        "2024-04-01T02:30+02:00",
    ]
    # 02:00 and 02:30 are skipped and 03:00 is due: one run at 03:00, not three.
    assert runs("*/30 * * * *", "Europe/Berlin", at("Europe/Berlin", 2024, 3, 31, 1, 10), 4) == [
        "2024-03-31T01:30+01:00",
        "2024-03-31T03:00+02:00",
        "2024-03-31T03:30+02:00",
        "2024-03-31T04:00+02:00",
    ]
    # Midnight did not exist in Sao Paulo on 2018-11-04: the daily build ran at 01:00.
    assert runs("0 0 * * *", "America/Sao_Paulo", at("America/Sao_Paulo", 2018, 11, 3, 12), 2) == [
        "2018-11-04T01:00-02:00",
        "2018-11-05T00:00-02:00",
    ]


def test_a_repeated_wall_time_runs_the_first_time_only():
    # Berlin, 2024-10-27: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happen twice.
    assert runs("30 2 * * *", "Europe/Berlin", at("Europe/Berlin", 2024, 10, 26, 12), 2) == [
        "2024-10-27T02:30+02:00",
        "2024-10-28T02:30+01:00",
    ]
    assert runs("*/30 * * * *", "Europe/Berlin", at("Europe/Berlin", 2024, 10, 27, 1, 10), 5) == [
        "2024-10-27T01:30+02:00",
        "2024-10-27T02:00+02:00",
        "2024-10-27T02:30+02:00",
        "2024-10-27T03:00+01:00",  # the second 02:00 and 02:30 ran already
        "2024-10-27T03:30+01:00",
    ]
    # Asked during the second pass, the first pass's times are past.
    second_pass = at("Europe/Berlin", 2024, 10, 27, 2, 10, fold=1)
    assert runs("30 2 * * *", "Europe/Berlin", second_pass, 1) == ["2024-10-28T02:30+01:00"]


def test_a_skipped_day():
    # Samoa skipped 2011-12-30 entirely.
    assert runs("0 12 * * *", "Pacific/Apia", datetime(2011, 12, 29, tzinfo=UTC), 3) == [
        "2011-12-29T12:00-10:00",
        "2011-12-31T00:00+14:00",
        "2011-12-31T12:00+14:00",
    ]


def test_macros_names_and_spacing():
    after = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    assert next_run(cron="@daily", timezone="UTC", after=after) == datetime(2030, 1, 2, tzinfo=UTC)
    assert next_run(cron="0 0 * JAN mon", timezone="UTC", after=after) == datetime(
        2030, 1, 7, tzinfo=UTC
    )
    assert normalize_cron("  0\t3  * * * ") == "0 3 * * *"
    assert next_run(cron=" 0  3 * * *", timezone="UTC", after=after) == datetime(
        2030, 1, 2, 3, tzinfo=UTC
    )


def test_a_naive_after_is_refused_and_an_impossible_date_never_due():
    with pytest.raises(ValueError, match="aware"):
        next_run(cron="* * * * *", timezone="UTC", after=datetime(2030, 1, 1))
    with pytest.raises(NeverDue):
        next_run(cron="0 0 30 2 *", timezone="UTC", after=datetime(2030, 1, 1, tzinfo=UTC))


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("", "five fields"),
        ("   ", "five fields"),
        ("* * * *", "has 4"),
        ("0 0 * * * 0", "has 6"),
        ("61 * * * *", "not a valid cron expression"),
        ("a b c d e", "not a valid cron expression"),
        ("*/0 * * * *", "not a valid cron expression"),
        ("1,,2 * * * *", "not a valid cron expression"),
        ("0 0 30 2 *", "never matches"),
        ("0 0 31 4,6,9,11 *", "never matches"),
        ("R * * * *", "Random (R) and hashed (H)"),
        ("H H * * *", "Random (R) and hashed (H)"),
        ("@reboot", "not a known shortcut"),
        ("0 " * 60, "at most 100"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(cron, says):
    problem = cron_problem(cron)
    assert problem is not None and says in problem


@pytest.mark.parametrize(
    "cron",
    ["* * * * *", "0 3 * * *", "*/15 9-17 * * 1-5", "0 0 1 */3 *", "0 0 * * THU", "@hourly"],
)
def test_good_cron_expressions_pass(cron):
    assert cron_problem(cron) is None


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"])
def test_iana_zone_names_pass(name):
    assert timezone_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus", "europe/berlin ", "../../etc/passwd", "America", "localtime"]
)
def test_other_zone_names_are_refused(name):
    problem = timezone_problem(name)
    assert problem is not None and "IANA" in problem


# --- properties -----------------------------------------------------------------------


@cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """The instants (to the minute) at which the zone's offset changed, 2005-2030."""
    zone = ZoneInfo(zone_name)
    found = []
    day = datetime(2005, 1, 1, tzinfo=UTC)
    offset = day.astimezone(zone).utcoffset()
    while day.year < 2030:
        nxt = day + timedelta(days=1)
        if nxt.astimezone(zone).utcoffset() != offset:
            low, high = day, nxt
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            found.append(high.replace(second=0, microsecond=0))
            offset = nxt.astimezone(zone).utcoffset()
        day = nxt
    return tuple(found)


@st.composite
def moments(draw) -> tuple[str, datetime]:
    """A zone and an instant, half of them within hours of one of its clock changes."""
    zone = draw(st.sampled_from(ZONES))
    near = transitions(zone)
    if near and draw(st.booleans()):
        base = draw(st.sampled_from(near))
        after = base + timedelta(seconds=draw(st.integers(-6 * 3600, 30 * 3600)))
        after += timedelta(microseconds=draw(st.sampled_from([0, 1, 999_999])))
    else:
        after = draw(
            st.datetimes(
                min_value=datetime(2005, 1, 1),
                max_value=datetime(2029, 12, 1),
                timezones=st.just(UTC),
            )
        )
    return zone, after


def walking_the_clock(minutes: set[int], hours: set[int] | None, zone_name: str, after):
    """The first instant after `after` at which the zone's clock reaches, for the first
    time, a wall time that matches, found minute by minute. Wall times the clock jumps
    over are reached at the jump; wall times it shows again were reached before."""
    zone = ZoneInfo(zone_name)

    def matches(wall: datetime) -> bool:
        return wall.minute in minutes and (hours is None or wall.hour in hours)

    t = (after - timedelta(days=1)).replace(second=0, microsecond=0)
    reached = t.astimezone(zone).replace(tzinfo=None)
    while t < after + timedelta(days=3):
        t += timedelta(minutes=1)
        wall = t.astimezone(zone).replace(tzinfo=None)
        if wall <= reached:
            continue  # shown again
        hit = False
        w = reached + timedelta(minutes=1)
        while w <= wall:
            hit = hit or matches(w)
            w += timedelta(minutes=1)
        reached = wall
        if hit and t > after:
            return t
    raise AssertionError("no run within three days")


@settings(max_examples=300, deadline=None)
@given(
    moment=moments(),
    minutes=st.sets(st.integers(0, 59), min_size=1, max_size=3),
    hours=st.none() | st.sets(st.integers(0, 23), min_size=1, max_size=4),
)
def test_daily_crons_run_when_the_clock_first_reaches_a_matching_time(moment, minutes, hours):
    zone, after = moment
    hour_field = "*" if hours is None else ",".join(map(str, sorted(hours)))
    cron = f"{','.join(map(str, sorted(minutes)))} {hour_field} * * *"
    assert next_run(cron=cron, timezone=zone, after=after) == walking_the_clock(
        minutes, hours, zone, after
    )


def fields() -> st.SearchStrategy[str]:
    def field(low: int, high: int) -> st.SearchStrategy[str]:
        value = st.integers(low, high).map(str)
        span = st.tuples(st.integers(low, high), st.integers(low, high)).map(
            lambda p: f"{min(p)}-{max(p)}"
        )
        step = st.tuples(st.sampled_from(["*", f"{low}-{high}"]), st.integers(1, 7)).map(
            lambda p: f"{p[0]}/{p[1]}"
        )
        items = st.lists(value | span, min_size=1, max_size=3).map(",".join)
        return st.just("*") | items | step

    return st.tuples(field(0, 59), field(0, 23), field(1, 28), field(1, 12), field(0, 6)).map(
        " ".join
    )


@settings(max_examples=300, deadline=None)
@given(moment=moments(), cron=fields())
def test_every_run_is_later_matches_the_cron_or_ends_a_jump_over_a_match(moment, cron):
    zone_name, after = moment
    zone = ZoneInfo(zone_name)
    assert cron_problem(cron) is None
    first = next_run(cron=cron, timezone=zone_name, after=after)
    second = next_run(cron=cron, timezone=zone_name, after=first)
    assert after < first < second
    for run in (first, second):
        assert run.tzinfo is UTC and run.second == 0 and run.microsecond == 0
        wall = run.astimezone(zone).replace(tzinfo=None)
        before = (run - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None)
        if croniter.match(cron, wall):
            continue
        # Not a match itself: the clock jumped forward at this instant, over a match.
        assert wall - before > timedelta(seconds=1)
        skipped = before.replace(second=0) + timedelta(minutes=1)
        assert any(
            croniter.match(cron, skipped + timedelta(minutes=m))
            for m in range(int((wall - skipped).total_seconds() // 60))
        )
