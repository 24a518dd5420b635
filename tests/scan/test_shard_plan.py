"""How a sharded scan cuts its files into shards (service/scan/shards.py `cut`): contiguous, disjoint, complete,
about `shard_size` each, cuts on directory boundaries when one is near, big directories split, bounded count.
(End to end, tests/scan/test_sharded_scans.py shows the shards probe every file exactly once.)"""

from __future__ import annotations

import itertools

from reelscan.service.scan import shards


def tree(*dirs: tuple[str, int]) -> list[str]:
    return sorted(f"/m/{d}/f{i:05d}.mp4" if d else f"/m/f{i:05d}.mp4" for d, n in dirs for i in range(n))


def test_shards_are_contiguous_disjoint_and_complete() -> None:
    paths = tree(("", 7), ("a", 33), ("a/deep", 25), ("b", 41), ("c", 3))
    ranges = shards.cut(paths, 20)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(paths)
    assert all(a < b for a, b in ranges) and all(r[1] == s[0] for r, s in itertools.pairwise(ranges))
    assert len(ranges) == 6  # ceil(109 / 20)


def test_cuts_move_to_a_nearby_directory_boundary() -> None:
    paths = tree(("a", 98), ("b", 102))  # a boundary 2 files from the even cut at 100
    assert shards.cut(paths, 100) == [(0, 98), (98, 200)]


def test_a_directory_bigger_than_a_shard_is_split_and_the_count_is_bounded() -> None:
    one_dir = tree(("big", 10_000))
    ranges = shards.cut(one_dir, 1_000)
    assert len(ranges) == 10 and {b - a for a, b in ranges} == {1_000}
    assert len(shards.cut(tree(("x", 100_000)), 10)) == shards.MAX_SHARDS  # never thousands of tiny shards
    assert shards.cut(tree(("y", 3)), 1_000) == [(0, 2), (2, 3)]  # always at least two when sharded


def test_wanted_follows_the_mode_and_the_threshold() -> None:
    assert not shards.wanted("auto", 4_999, 5_000) and shards.wanted("auto", 5_000, 5_000)
    assert shards.wanted("always", 2, 5_000) and not shards.wanted("always", 1, 5_000)
    assert not shards.wanted("never", 10**6, 5_000)
