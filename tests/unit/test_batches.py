"""How a bulk delete cuts its ids into batches: max-size while they fill whole rounds, then the last
round in equal shares, one per place in flight, so that it ends together."""

from __future__ import annotations

from collections.abc import Sequence

from purgewarden.tools.vault.batches import Batches

SIZE = 1_000


def ids(n: int) -> list[str]:
    return [f"id-{i:06d}" for i in range(n)]


def cut_all(batches: Batches, places: int | Sequence[int]) -> list[Sequence[str]]:
    """Every batch, `places` in flight (or the limit as it moves, batch by batch)."""
    moving = iter([places] if isinstance(places, int) else places)
    now = next(moving)
    cut = []
    while (item := batches.next(places=now)) is not None:
        number, batch = item
        assert number == len(cut) + 1
        cut.append(batch)
        now = next(moving, now)
    return cut


def test_the_last_round_of_a_long_run_is_shared_out_one_share_per_place() -> None:
    approved = ids(100_000)
    batches = Batches(approved, SIZE)
    assert batches.count == 100
    cut = cut_all(batches, 12)
    # 8 whole rounds of 12 full batches, then 4,000 ids for 12 places: a third of a batch each
    assert [len(b) for b in cut] == [SIZE] * 96 + [334] * 11 + [326]
    assert [i for batch in cut for i in batch] == approved  # every id once, in order
    assert batches.count == 108
    assert not batches.uncut()


def test_a_round_that_the_ids_left_still_fill_is_not_shared_out() -> None:
    cut = cut_all(Batches(ids(24_000), SIZE), 12)
    assert [len(b) for b in cut] == [SIZE] * 24


def test_a_run_of_one_round_or_less_keeps_its_batches_whole() -> None:
    """Its batches already go out at once: sharing them out would only add calls."""
    assert [len(b) for b in cut_all(Batches(ids(2_500), SIZE), 4)] == [SIZE, SIZE, 500]
    assert [len(b) for b in cut_all(Batches(ids(3_500), SIZE), 1)] == [SIZE, SIZE, SIZE, 500]


def test_a_small_rest_is_not_cut_into_crumbs() -> None:
    cut = cut_all(Batches(ids(12_250), SIZE), 12)
    # 250 ids for 12 places would be shares of 21: a call each for too little; a tenth of a batch at least
    assert [len(b) for b in cut] == [SIZE] * 12 + [100, 100, 50]


def test_the_shares_hold_once_cut_though_the_limit_moves() -> None:
    cut = cut_all(Batches(ids(10_000), SIZE), [4] * 9 + [16, 1])
    assert [len(b) for b in cut] == [SIZE] * 8 + [500] * 4


def test_ids_no_batch_was_cut_for_are_told_and_still_counted() -> None:
    approved = ids(5_000)
    batches = Batches(approved, SIZE)
    first = batches.next(places=2)
    assert first is not None
    assert batches.uncut() == approved[SIZE:]
    assert batches.count == 5
