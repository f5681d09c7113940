"""The depth cache: matching a colour stamp within the tolerance, and every reason there is no match."""

from __future__ import annotations

import threading

import pytest

from pixellm_ros.ros.depth_cache import NS_PER_S, DepthCache

MS = 1_000_000


def _cache(**kw) -> DepthCache:
    cache = DepthCache(capacity=kw.pop("capacity", 5), tolerance_s=kw.pop("tolerance_s", 0.02), **kw)
    return cache


def test_the_nearest_depth_within_the_tolerance_comes_with_the_camera_info() -> None:
    cache = _cache()
    cache.set_camera_info("info")
    t0 = 100 * NS_PER_S
    for k in range(4):
        cache.add_depth(t0 + k * 33 * MS, f"depth{k}")
    exact = cache.match(t0 + 33 * MS)
    assert exact.ok and exact.depth == "depth1" and exact.camera_info == "info" and exact.offset_s == 0.0
    assert exact.depth_stamp_ns == t0 + 33 * MS and exact.reason == ""
    near = cache.match(t0 + 33 * MS + 12 * MS)  # 12 ms after depth1, 21 ms before depth2
    assert near.ok and near.depth == "depth1" and near.offset_s == pytest.approx(-0.012)
    later = cache.match(t0 + 66 * MS - 5 * MS)
    assert later.depth == "depth2" and later.offset_s == pytest.approx(0.005)


def test_no_depth_yet_and_no_camera_info() -> None:
    cache = _cache(depth_topic="/cam/depth", info_topic="/cam/info")
    none = cache.match(5 * NS_PER_S)
    assert not none.ok and none.depth is None and none.may_arrive_later
    assert none.reason == "no depth image received yet on '/cam/depth'"
    cache.add_depth(5 * NS_PER_S, "d")
    no_info = cache.match(5 * NS_PER_S)
    assert not no_info.ok and no_info.reason == "no camera_info received yet on '/cam/info'"
    assert no_info.may_arrive_later and no_info.depth == "d"
    cache.set_camera_info("i")
    assert cache.match(5 * NS_PER_S).ok


def test_stale_depth_may_still_arrive_an_evicted_one_cannot() -> None:
    cache = _cache(capacity=3)
    cache.set_camera_info("i")
    for k in range(6):  # 0, 100, ..., 500 ms; only the last 3 stay
        cache.add_depth(k * 100 * MS, k)
    assert len(cache) == 3 and cache.received == 6
    stale = cache.match(800 * MS)
    assert not stale.ok and stale.may_arrive_later
    assert stale.reason.startswith("stale depth: the newest depth image on 'depth/image_raw' is 0.300 s older")
    evicted = cache.match(100 * MS)
    assert not evicted.ok and not evicted.may_arrive_later
    assert "0.200 s older than every cached depth image (3 kept" in evicted.reason
    gap = cache.match(350 * MS)
    assert not gap.ok and not gap.may_arrive_later and "nearest 0.050 s away" in gap.reason


def test_out_of_order_and_repeated_stamps() -> None:
    cache = _cache(capacity=3, tolerance_s=0.0)
    cache.set_camera_info("i")
    for stamp, frame in ((300, "c"), (100, "a"), (200, "b"), (200, "b2")):
        cache.add_depth(stamp * MS, frame)
    assert len(cache) == 3
    assert [cache.match(s * MS).depth for s in (100, 200, 300)] == ["a", "b2", "c"]
    cache.add_depth(50 * MS, "old")  # older than everything kept: the oldest goes, i.e. this one
    assert len(cache) == 3 and cache.match(100 * MS).depth == "a"
    cache.clear()
    assert len(cache) == 0 and "no depth image received yet" in cache.match(100 * MS).reason


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        DepthCache(capacity=0)
    with pytest.raises(ValueError, match="tolerance"):
        DepthCache(tolerance_s=-0.1)


def test_writers_and_readers_in_threads() -> None:
    cache = _cache(capacity=20, tolerance_s=0.0)
    cache.set_camera_info("i")
    errors: list[str] = []

    def write(offset: int) -> None:
        for k in range(500):
            cache.add_depth((offset + 2 * k) * MS, offset + 2 * k)

    def read() -> None:
        for k in range(500):
            found = cache.match(k * MS)
            if found.ok and found.depth != k:
                errors.append(f"{k} -> {found.depth}")

    threads = [threading.Thread(target=write, args=(o,)) for o in (0, 1)] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) == 20 and cache.received == 1000
