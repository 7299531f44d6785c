"""A name -> object registry that fails loudly, in the manner of fvcore's ``Registry``.

Freeze strategies and augmentation policies are chosen by name from a sweep config; a wrong name must
fail before any trial starts, with the valid names (closest first) in the message.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def closest(name: str, choices: list[str], n: int = 3) -> list[str]:
    """The choices nearest to ``name`` by spelling, best first (may be empty)."""
    return difflib.get_close_matches(name, choices, n=n, cutoff=0.4)


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    hint = closest(name, choices)
    did_you_mean = f" Did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
    return f"unknown {kind} {name!r}.{did_you_mean} Allowed: {', '.join(sorted(choices))}."


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            raise KeyError(unknown_name_message(self.kind, name, list(self._items)))
        return self._items[name]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)
