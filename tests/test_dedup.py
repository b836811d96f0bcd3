"""The dedup packing (kaleido.views.dedup): one-to-one, and its bits where the split reads them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kaleido.views.dedup import MAX_DEPTH, MIN_DEPTH, pack_pair, unpack_pair, user_bit

ids = st.one_of(st.integers(1, 2**20), st.integers(1, 2**63 - 1))


@given(user=ids, post=ids, bits=st.integers(0, 10))
def test_a_pair_packs_one_to_one(user: int, post: int, bits: int) -> None:
    field = pack_pair(user, post, bits)
    partition, address = post & ((1 << bits) - 1), user & ((1 << MIN_DEPTH) - 1)
    assert unpack_pair(field, partition, bits, address) == (user, post)
    for depth in range(MIN_DEPTH, MAX_DEPTH + 1):
        assert user_bit(field, depth) == (user >> depth) & 1


@given(a=st.tuples(ids, ids), b=st.tuples(ids, ids))
def test_two_pairs_of_one_bucket_never_share_a_field(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    # Same bucket: same partition (post's low bits) and address (user's low bits).
    b = ((b[0] & ~15) | (a[0] & 15), (b[1] & ~63) | (a[1] & 63))
    if a != b and b[0] > 0 and b[1] > 0:
        assert pack_pair(*a, 6) != pack_pair(*b, 6)


def test_small_ids_pack_into_a_few_bytes() -> None:
    assert len(pack_pair(15_000_000, 100_000, 6)) == 5  # 3 bytes of user, 2 of post
    assert len(pack_pair(1, 1, 6)) == 2
