"""How many entries the consumer's next read asks for: as many as fit a byte budget.

XREADGROUP and XAUTOCLAIM bound a read by a count of entries, not by bytes, so a count sized
for ordinary results (a 1408-float embedding is ~30 KB) would take 512 entries at the 2 MiB
cap, 1 GiB, in one reply. `ReadSize` starts small, grows at most twofold per read while entries
stay small, and shrinks at once to what the budget holds at the mean size of the last read.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from kaleido.streams.inbound import Entry

# Entry bytes one read aims to hold: ordinary reads (512 entries of a few KB to ~30 KB) stay
# well under it, so only oversized entries make reads smaller.
READ_BUDGET = 32 * 1024 * 1024
# Entries the first read asks for: at the 2 MiB entry cap, still within the budget.
FIRST_READ = 16


@attrs.define
class ReadSize:
    """The count for the next read, between 1 and `ceiling`."""

    ceiling: int
    budget: int = READ_BUDGET
    count: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.count = min(FIRST_READ, self.ceiling)

    def at_most(self, count: int) -> int:
        """The count for a read that asks for no more than `count` entries."""
        return max(1, min(count, self.count))

    def saw(self, entries: Sequence[Entry]) -> None:
        """Adjust to the sizes of a read's entries."""
        if not entries:
            return
        size = sum(len(k) + len(v) for entry in entries for k, v in entry.fields.items())
        fits = self.budget // max(1, size // len(entries))
        self.count = max(1, min(self.ceiling, 2 * self.count, fits))
