"""Objects that own a background event-loop thread forget it in a forked child.

``fork`` copies the parent's memory but only the calling thread: a child inherits a loop object whose thread does
not exist there (a call would wait forever) and a lock that may have been held by a thread that is gone. verl's
process pools and ``multiprocessing`` fork on Linux, so every such owner registers here and is reset in the child;
it starts a fresh loop (and fresh HTTP connections) on its next call.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_OWNERS: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def reset_in_forked_children(owner: ForkAware) -> None:
    """Call ``owner._after_fork_in_child()`` in every child forked from now on (while ``owner`` lives)."""
    _OWNERS.add(owner)


def _reset_all() -> None:
    for owner in list(_OWNERS):
        owner._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_all)
