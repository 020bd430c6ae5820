"""tether.clock: the one time format (state.json, run.lock, attrs, launch.json)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from tether.clock import ISO_FORMAT, iso_from_timestamp, now_iso, parse_iso

FORMAT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def test_now_is_utc_with_microseconds_and_z():
    before = datetime.now(timezone.utc).strftime(ISO_FORMAT)
    now = now_iso()
    after = datetime.now(timezone.utc).strftime(ISO_FORMAT)
    assert FORMAT.fullmatch(now) and before <= now <= after


def test_timestamps_and_parsing():
    assert iso_from_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert iso_from_timestamp(1.5, 3) == "1970-01-01T00:00:01.500Z"
    when = parse_iso("2026-11-22T23:00:00.250000Z")
    assert when == datetime(2026, 11, 22, 23, 0, 0, 250000, tzinfo=timezone.utc)
    assert parse_iso(None) is None and parse_iso("") is None and parse_iso("soon") is None
