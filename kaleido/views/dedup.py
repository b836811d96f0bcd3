"""Compact dedup: where a (user, post) pair's "last counted" time lives, and how it is packed.

Time is cut into windows one TTL long (window = Redis `TIME` // TTL). A pair counted in window
w is stored in one of w's *buckets*: small hashes that Redis keeps in listpack encoding, a few
bytes per field instead of the ~70 B of a key of its own. The field is the pair packed into
bytes, the value when it counted (in ticks of TTL/32768 from the window's start, a 2-3 byte
integer). A view counts unless its pair is in window w's bucket or counted in w-1's bucket
less than a TTL ago; buckets expire when w+2 begins, so a pair stays at most two TTLs.

Buckets of one partition and window form an extendible hash table on the user id's low bits:
bucket `a` at depth d holds the users with `user mod 2**d == a`; a bucket that grows past
`BUCKET_CAP` fields splits in two (depth d+1), so buckets stay small (fast to scan, compact)
whatever the skew between posts. The depths are a *directory* string in Redis, one byte per
`user mod 2**g` for the window's deepest bucket g. Scripts must declare their keys, so the
client keeps a copy of each directory, names the buckets from it, and the script checks the
copy against Redis (a stale copy is refreshed and the call retried; see `ViewStore.record`).
A record call reports the buckets it filled nearly to the cap; the client then names their other
half in the calls that touch them, and the script splits a bucket when it passes the cap.

The protocol in full: docs/views.md "Dedup, compactly".
"""

from __future__ import annotations

import attrs

# Depth of every bucket of a new window: 16 buckets per partition and window.
MIN_DEPTH = 4
# Deepest split: 65536 buckets per partition and window; past it a bucket just grows.
MAX_DEPTH = 16
# Fields per bucket before it splits: a lookup scans at most this many fields, and redis.conf's
# hash-max-listpack-entries (512) leaves room above it so that buckets stay listpacks.
BUCKET_CAP = 128
# A record call reports buckets this full; the next call names their other half, so that the
# script can split them when they pass the cap.
NEARLY_FULL = BUCKET_CAP * 3 // 4
# A stored time is a tick count from its window's start: TTL/TICKS per tick.
TICKS = 32768

_LOW_MASK = (1 << MAX_DEPTH) - 1

# One partition's group of views in a record call's packed argument: KEYS indexes of its
# counts, epoch, replayed set, this window's and the previous window's directories; its views.
GROUP_HEADER = "<HHHHHH"
# One view in a record call's packed argument (struct format, as Lua's struct.unpack reads it):
# user's low bits, bucket depth, previous window's bucket depth, KEYS indexes of the bucket, of
# its other half (0: not named, it cannot split in this call), of the previous window's bucket
# and of a v1 flag (0: none), sizes of the packed pair and of the post id's digits, which follow.
VIEW_HEADER = "<HBBHHHHBB"


def pack_pair(user_id: int, post_id: int, partition_bits: int) -> bytes:
    """The bucket field of a pair: user >> MIN_DEPTH, then post >> partition_bits.

    The bits dropped are implied by the bucket's address and partition. Both parts are
    little-endian; the user's takes ceil(n/2) of the n bytes and the post's the rest (the
    shorter one is padded to fit), so the packing is one-to-one.
    """
    user, post = user_id >> MIN_DEPTH, post_id >> partition_bits
    user_size = (user.bit_length() + 7) >> 3 or 1
    post_size = (post.bit_length() + 7) >> 3 or 1
    if user_size > post_size + 1:
        post_size = user_size - 1
    elif user_size < post_size:
        user_size = post_size
    return user.to_bytes(user_size, "little") + post.to_bytes(post_size, "little")


def unpack_pair(field: bytes, partition: int, partition_bits: int, address: int) -> tuple[int, int]:
    """The inverse of pack_pair, given the bucket's partition and address (low user bits)."""
    user_size = (len(field) + 1) // 2
    user = int.from_bytes(field[:user_size], "little") << MIN_DEPTH
    post = int.from_bytes(field[user_size:], "little") << partition_bits
    return user | (address & ((1 << MIN_DEPTH) - 1)), post | partition


def user_bit(field: bytes, depth: int) -> int:
    """Bit `depth` of the user id packed in `field` (as the split script reads it)."""
    index = depth - MIN_DEPTH
    if index >> 3 >= (len(field) + 1) // 2:
        return 0
    return (field[index >> 3] >> (index & 7)) & 1


def low_bits(user_id: int) -> int:
    return user_id & _LOW_MASK


def depth_in(directory: bytes | None, low: int) -> int:
    """A bucket's depth for a user's low bits, from a directory (None: a window not split)."""
    if not directory:
        return MIN_DEPTH
    return directory[low % len(directory)]


def expected_fields_per_bucket() -> float:
    """Average fill of a split bucket: extendible hashing keeps buckets ~ln 2 full."""
    return BUCKET_CAP * 0.69


@attrs.define
class Directories:
    """The client's copies of bucket directories, by (partition, window)."""

    copies: dict[tuple[int, int], bytes | None] = attrs.Factory(dict)

    def get(self, partition: int, window: int) -> bytes | None:
        return self.copies.get((partition, window))

    def put(self, partition: int, window: int, directory: bytes | None) -> None:
        self.copies[(partition, window)] = directory or None

    def forget_before(self, window: int) -> None:
        """Drop copies of windows that can no longer decide anything."""
        for key in [k for k in self.copies if k[1] < window]:
            del self.copies[key]
