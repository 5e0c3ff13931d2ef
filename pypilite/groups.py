"""What a group reaches: the one walk through nested groups that serving, listing and validating all take,
so they never disagree on which repositories a group is made of, nor in what order."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

T = TypeVar("T")


def flatten(members: Iterable[T], members_of: Callable[[T], Iterable[T] | None],
            key: Callable[[T], Hashable]) -> list[T]:
    """The repositories other than groups that `members` reach, depth first in member order, each once (the
    first place counts). `members_of(m)` is a group's own members, None for any other kind; a group met again
    (listed twice, or a cycle) adds nothing."""
    leaves: dict[Hashable, T] = {}
    groups: set[Hashable] = set()

    def walk(items: Iterable[T]) -> None:
        for item in items:
            nested = members_of(item)
            if nested is None:
                leaves.setdefault(key(item), item)
            elif key(item) not in groups:
                groups.add(key(item))
                walk(nested)

    walk(members)
    return list(leaves.values())
