"""`@pickled_by_fields`: a frozen, slotted dataclass pickled as the call that makes it.

`dataclass(slots=True)` pickles through `__getstate__`/`__setstate__`, which set each field with
`object.__setattr__` in a Python loop. Forked processes hand values back by pickle (link views
from the other half of a capture's flows, engine/shards.py; the judged chains' light forms,
document/split.py), and that loop was most of the time this process waited for them. The typed
values here have exactly their constructor's arguments as fields (no `field(init=False)`, no
`__post_init__`), so each is pickled as `cls(*fields)` instead: the same value, about twice as
fast both ways (tests/test_model_values.py holds every one to that).
"""
from __future__ import annotations

from dataclasses import fields
from operator import attrgetter
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def pickled_by_fields(cls: type[T]) -> type[T]:
    """Pickle instances of dataclass `cls` as `cls(*their fields)`."""
    parts = fields(cls)     # type: ignore[arg-type]
    if not all(f.init for f in parts) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: its fields must be exactly its constructor's arguments")
    names = [f.name for f in parts]
    get: Callable[[Any], tuple] = attrgetter(*names) if len(names) > 1 else (lambda v: (getattr(v, names[0]),))

    def __reduce__(self: Any) -> str | tuple:
        if type(self) is not cls:       # a subclass: its own fields would be lost
            return object.__reduce__(self)
        return cls, get(self)
    cls.__reduce__ = __reduce__         # type: ignore[assignment,method-assign]
    return cls
