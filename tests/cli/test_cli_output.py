"""Printing like kubectl: human durations at every precision step, ages and time left,
aligned tables, `-o json|yaml` that parse back, and List wrapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from zsp_operator.cli.output import age, as_list, dump, human_duration, object_name, table, until

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "shown"),
    [
        (timedelta(seconds=-5), "<invalid>"),
        (timedelta(seconds=-1), "0s"),  # clock skew between client and server
        (timedelta(0), "0s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=2), "2m"),
        (timedelta(minutes=3, seconds=20), "3m20s"),
        (timedelta(minutes=9, seconds=59), "9m59s"),
        (timedelta(minutes=10, seconds=30), "10m"),
        (timedelta(minutes=179), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=5), "3h5m"),
        (timedelta(hours=7, minutes=59), "7h59m"),
        (timedelta(hours=8, minutes=30), "8h"),
        (timedelta(hours=47), "47h"),
        (timedelta(hours=48), "2d"),
        (timedelta(days=3, hours=4), "3d4h"),
        (timedelta(days=7, hours=23), "7d23h"),
        (timedelta(days=8, hours=5), "8d"),
        (timedelta(days=729), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=365 * 2 + 30), "2y30d"),
        (timedelta(days=365 * 9), "9y"),
    ],
)
def test_human_duration_drops_precision_as_kubectl_does(delta: timedelta, shown: str) -> None:
    assert human_duration(delta) == shown


@pytest.mark.parametrize(
    ("when", "shown_age", "shown_until"),
    [
        (None, "<none>", "<none>"),
        (NOW - timedelta(minutes=5), "5m", "0s"),
        (NOW + timedelta(minutes=9, seconds=58), "<invalid>", "9m58s"),
    ],
)
def test_age_and_time_left(when: datetime | None, shown_age: str, shown_until: str) -> None:
    assert age(when, NOW) == shown_age
    assert until(when, NOW) == shown_until, "a deadline that has passed reads 0s, never negative"


def test_table_aligns_columns_three_spaces_apart_without_trailing_blanks() -> None:
    text = table(["name", "phase", "expires in"], [["deploy-1", "Active", "9m"], ["b", "Pending", ""]])
    assert text.splitlines() == [
        "NAME       PHASE     EXPIRES IN",
        "deploy-1   Active    9m",
        "b          Pending   <none>",
    ]


def test_table_of_no_rows_is_the_header() -> None:
    assert table(["name"], []) == "NAME"


@pytest.mark.parametrize(("fmt", "load"), [("json", json.loads), ("yaml", yaml.safe_load)])
def test_dump_parses_back_and_keeps_field_order(fmt: str, load: object) -> None:
    obj = {"kind": "AccessRequest", "apiVersion": "zsp.dev/v1alpha1", "metadata": {"name": "x"}}
    text = dump(obj, fmt)
    assert load(text) == obj  # type: ignore[operator]
    assert text.index("kind") < text.index("apiVersion"), "the server's order, not sorted"


def test_dump_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="xml"):
        dump({}, "xml")


def test_lists_are_wrapped_like_kubectl_get() -> None:
    assert as_list([{"a": 1}]) == {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"a": 1}],
        "metadata": {"resourceVersion": ""},
    }
    assert object_name("deploy-1") == "accessrequest.zsp.dev/deploy-1"
