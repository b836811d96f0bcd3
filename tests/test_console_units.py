"""The console's pure parts: the history ring, the charts (and their SVG), the session cookie
and CSRF token, and where a login may send the browser back to."""

from __future__ import annotations

import re

import pytest

from kaleido.http.console.charts import Point, chart_span, line_chart, nice_max
from kaleido.http.console.login import safe_next
from kaleido.http.console.pages import outbox_tile
from kaleido.http.console.render import ENV, cut
from kaleido.http.console.session import SessionKeys
from kaleido.ops.history import MAX_SAMPLES, History, Sample, SyncLog, SyncRun, ring_capacity
from kaleido.ops.limits import OUTBOX_AGE_LIMIT
from kaleido.outbox import Backlog

NOW = 1_700_000_000.0


def sample(at: float, counted: float = 0.0, duplicate: float = 0.0) -> Sample:
    return Sample(at=at, views_counted=counted, views_duplicate=duplicate)


def test_the_history_ring_keeps_one_hour_and_no_more() -> None:
    history = History(interval=5.0)
    assert history.capacity == 721  # an hour at one sample per 5 s, both ends included
    for i in range(2000):
        history.add(sample(NOW + 5 * i, counted=i))
    assert len(history) == history.capacity
    kept = history.samples()
    assert kept[0].views_counted == 2000 - history.capacity and kept[-1].views_counted == 1999
    assert history.latest() == kept[-1]


def test_ring_capacity_is_bounded_and_checked() -> None:
    assert ring_capacity(0.001) == MAX_SAMPLES
    assert ring_capacity(10_000.0) == 2
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="interval"):
            ring_capacity(bad)


def test_rates_per_second_and_a_counter_reset_reads_as_zero() -> None:
    history = History(interval=1.0)
    for at, counted in ((0, 0), (2, 10), (4, 30), (6, 5)):  # a worker restarted before 6
        history.add(sample(NOW + at, counted=counted, duplicate=at))
    rates = history.rates()
    assert [r.counted for r in rates] == [5.0, 10.0, 0.0]
    assert [r.duplicate for r in rates] == [1.0, 1.0, 1.0]


def test_the_sync_log_keeps_the_newest_runs_first() -> None:
    log = SyncLog(size=3)
    for i in range(5):
        log.record(SyncRun(at=NOW + i, result="success", seconds=0.1, views=i))
    assert [run.views for run in log.runs()] == [4, 3, 2]


def render_chart(chart: object) -> str:
    template = ENV.from_string('{% from "_chart.html" import chart %}{{ chart(c) }}')
    return template.render(c=chart)


def test_a_chart_without_samples_says_so() -> None:
    chart = line_chart("Pending posts", [("pending", "tone-1", [])], now=NOW)
    assert chart.empty and chart.y_max == 1.0
    html = render_chart(chart)
    assert "No samples yet" in html and "<svg" not in html


def test_a_chart_with_one_sample_draws_a_dot() -> None:
    chart = line_chart("Pending posts", [("pending", "tone-1", [(NOW, 7.0)])], now=NOW)
    assert not chart.empty and chart.y_max == 10.0
    html = render_chart(chart)
    assert html.count("<circle") == 1 and "<polyline" not in html
    assert "pending 7" in html  # the legend's last value


def test_a_chart_with_many_samples_draws_lines_broken_at_gaps() -> None:
    points: list[Point] = [(NOW - 3600 + 60 * i, float(i)) for i in range(61)]
    points[30] = (points[30][0], None)  # Redis was not sampled then
    chart = line_chart("Lag", [("lag", "tone-1", points)], now=NOW, fmt=lambda v: f"{v:.0f}")
    (line,) = chart.lines
    assert [len(segment) for segment in line.segments] == [30, 30]
    assert chart.y_max == 100.0 and [label for _, label in chart.grid] == ["0", "50", "100"]
    xs = [x for segment in line.segments for x, _ in segment]
    assert xs == sorted(xs) and xs[0] == chart.plot_left and xs[-1] == chart.plot_right
    html = render_chart(chart)
    assert html.count("<polyline") == 2 and "<circle" not in html
    first = re.search(r'points="([^"]+)"', html)
    assert first is not None and len(first.group(1).split()) == 30


def test_chart_scale_and_span() -> None:
    assert [nice_max(v) for v in (0, 0.3, 1, 1.2, 2.2, 4, 7, 999)] == [
        1.0, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 1000.0,
    ]  # fmt: skip
    assert chart_span(None, NOW) == 3600.0
    assert chart_span(NOW - 5, NOW) == 60.0  # a young process: at least a minute
    assert chart_span(NOW - 900, NOW) == 900.0
    assert chart_span(NOW - 9000, NOW) == 3600.0


def test_long_values_are_cut_with_an_ellipsis() -> None:
    assert cut("x" * 200) == "x" * 200
    assert cut("x" * 201) == "x" * 200 + "…"


def test_session_cookies_are_signed_and_expire() -> None:
    keys = SessionKeys.derive("admin-token", None)
    assert keys is not None
    session, cookie = keys.issue("admin", int(NOW) + 60)
    assert keys.read(cookie, NOW) == session
    assert keys.read(cookie, NOW + 61) is None  # expired
    payload, _, signature = cookie.rpartition(".")
    forged = keys.cookies.dumps([session.sid, "admin", int(NOW) + 99999])
    assert keys.read(forged.rpartition(".")[0] + "." + signature, NOW) is None
    for junk in (None, "", "v1.admin", "x" * 1000, cookie + "x", payload):
        assert keys.read(junk, NOW) is None
    # Every worker derives the same key from the same secret; another secret, another key.
    again = SessionKeys.derive("admin-token", None)
    assert again is not None and again.read(cookie, NOW) == session
    other = SessionKeys.derive("other-token", None)
    assert other is not None and other.read(cookie, NOW) is None
    assert SessionKeys.derive(None, None) is None


def test_the_csrf_token_belongs_to_one_session() -> None:
    keys = SessionKeys.derive(None, b"jwt-key")
    assert keys is not None
    one, _ = keys.issue("user", int(NOW) + 60)
    two, _ = keys.issue("user", int(NOW) + 60)
    assert keys.csrf_ok(one, keys.csrf_token(one))
    assert not keys.csrf_ok(one, keys.csrf_token(two))
    assert not keys.csrf_ok(one, "") and not keys.csrf_ok(one, None)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ops/streams", "/ops/streams"),
        ("/ops/dlq/x?type=A", "/ops/dlq/x?type=A"),
        ("/ops", "/ops"),
        (None, "/ops"),
        ("//evil.example/ops", "/ops"),
        ("https://evil.example/ops", "/ops"),
        ("/opsevil", "/ops"),
        ("/ops/\\evil", "/ops"),
        ("/metrics", "/ops"),
    ],
)
def test_a_login_returns_only_inside_the_console(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_the_outbox_tile_says_what_waits_and_turns_red_when_it_is_old() -> None:
    assert outbox_tile(None).tone == "muted"
    assert outbox_tile(Backlog(0, None, 0.0)).value == "0"
    waiting = outbox_tile(Backlog(12, 3, 2.0))
    assert (waiting.value, waiting.tone) == ("12", "ok")
    assert outbox_tile(Backlog(12, 3, OUTBOX_AGE_LIMIT + 1)).tone == "bad"
