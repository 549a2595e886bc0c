"""The dashboard trend fields on the known dataset of test_dashboards (ManualClock from
2026-03-02 00:00 UTC = 08:00 in Shanghai; orders reported at 09:16 local): A closed after
10 h (19:16 on 2 March, local), C after 20 h (05:16 on 3 March), B after 30 h (15:16 on
3 March); D and E stay open.

By hand: 2 March: [10] -> median 10, p90 10; 3 March: [20, 30] -> median 25, p90 20 + 0.9 * 10 = 29."""
from __future__ import annotations

from tests.api.test_dashboards import D, dataset, fresh  # noqa: F401 (fixtures)

__all__: list[str] = []


def test_by_day_median_and_p90_per_local_day(client, fresh):  # noqa: F811
    w = client.get(D + "/workorders", headers=fresh["dispatcher"]).json()
    assert w["by_day"] == [
        {"day": "2026-03-02", "closed": 1, "median_hours": 10.0, "p90_hours": 10.0},
        {"day": "2026-03-03", "closed": 2, "median_hours": 25.0, "p90_hours": 29.0},
    ]
    assert sum(d["closed"] for d in w["by_day"]) == w["closed"]


def test_hotspots_by_category_and_area(client, fresh):  # noqa: F811
    w = client.get(D + "/workorders", headers=fresh["dispatcher"]).json()
    assert w["hotspots"] == [
        {"category": "exposed_garbage", "area": "dongcheng", "reported": 3},
        {"category": "exposed_garbage", "area": "xinhe", "reported": 1},
        {"category": "road_damage", "area": "xinhe", "reported": 1},
    ]
    assert w["reported_total"] == 5


def test_period_bounds_by_day_and_hotspots(client, fresh):  # noqa: F811
    # 3 March local only: C and B closed that day; nothing reported that day
    w = client.get(D + "/workorders?from=2026-03-03&to=2026-03-04", headers=fresh["dispatcher"]).json()
    assert w["by_day"] == [{"day": "2026-03-03", "closed": 2, "median_hours": 25.0, "p90_hours": 29.0}]
    assert (w["hotspots"], w["reported_total"]) == ([], 0)


def test_unit_leader_trends_cover_their_unit_only(client, fresh):  # noqa: F811
    w = client.get(D + "/workorders", headers=fresh["unit_leader"]).json()   # clean-east: A (10 h), B (30 h)
    assert w["by_day"] == [
        {"day": "2026-03-02", "closed": 1, "median_hours": 10.0, "p90_hours": 10.0},
        {"day": "2026-03-03", "closed": 1, "median_hours": 30.0, "p90_hours": 30.0},
    ]
    assert w["hotspots"] == [{"category": "exposed_garbage", "area": "dongcheng", "reported": 3}]
