import numpy as np
import pandas as pd
import pytest

from recommender.data_model import validate_events
from recommender.errors import InvalidRequest
from recommender.model.data import (
    ItemVocabulary, build_sessions, parts_split, prefix_examples, refit_split, serving_split, split_sessions,
    tail_mask_from_counts, validation_examples,
)


def test_sessions_are_cut_at_30_minute_gaps_when_session_id_is_absent():
    raw = pd.DataFrame({
        "ts": ["2026-01-01T10:00:00Z", "2026-01-01T10:20:00Z", "2026-01-01T11:00:00Z", "2026-01-01T10:05:00Z"],
        "user_id": ["a", "a", "a", "b"],
        "item_id": ["1", "2", "3", "4"],
        "event_type": ["view"] * 4,
    })
    clicks = build_sessions(validate_events(raw)[0])
    sizes = clicks.groupby("session")["item_id"].apply(list).tolist()
    assert sorted(sizes) == [["1", "2"], ["3"], ["4"]]


def test_sessions_come_in_the_order_they_ended_whatever_their_ids():
    # "a" ends last though its id sorts first: the KNN methods read this order as recency.
    raw = pd.DataFrame({
        "ts": ["2026-01-01T10:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T10:30:00Z", "2026-01-01T11:00:00Z",
               "2026-01-01T10:10:00Z"],
        "session_id": ["a", "a", "b", "c", "c"], "item_id": ["1", "2", "3", "4", "5"], "event_type": ["view"] * 5,
    })
    clicks = build_sessions(validate_events(raw)[0])
    assert clicks["session"].tolist() == ["s:b", "s:c", "s:c", "s:a", "s:a"]
    assert clicks["item_id"].tolist() == ["3", "5", "4", "1", "2"]  # within a session, by time


def test_repeated_consecutive_clicks_collapse():
    raw = pd.DataFrame({
        "ts": ["2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z", "2026-01-01T10:02:00Z"],
        "session_id": ["s", "s", "s"], "item_id": ["1", "1", "2"], "event_type": ["view", "cart", "view"],
    })
    assert build_sessions(validate_events(raw)[0])["item_id"].tolist() == ["1", "2"]


def test_vocabulary_reserves_zero_for_padding_and_unknown_ids():
    vocab = ItemVocabulary(["a", "b"])
    assert vocab.index_of(["b", "zzz", "a"]).tolist() == [2, 0, 1]
    assert len(vocab) == 3 and "a" in vocab and "<pad>" not in vocab


def test_head_is_the_popular_items_making_up_80_percent():
    # counts 50, 30, 10, 5, 5 (total 100): 50 + 30 = 80 reaches 80% -> items 1, 2 are head
    is_tail = tail_mask_from_counts(np.array([0, 50, 30, 10, 5, 5]))
    assert is_tail.tolist() == [False, False, False, True, True, True]


def test_split_keeps_time_order_and_filters_rare_items(chain_frame):
    split = split_sessions(build_sessions(chain_frame), test_days=1.0)
    assert split.train and split.valid and split.test
    assert all(len(s) >= 2 for s in split.train + split.valid + split.test)
    assert split.item_counts[0] == 0 and split.item_counts[1:].min() >= 1


def test_every_prefix_predicts_the_next_item():
    ex = prefix_examples([np.array([5, 6, 7])], max_length=20)
    assert ex.items.tolist() == [[5, 0], [5, 6]]
    assert ex.lengths.tolist() == [1, 2] and ex.targets.tolist() == [6, 7]


def test_a_split_with_nothing_left_says_what_to_change():
    raw = pd.DataFrame({"ts": ["2026-01-01T10:00:00Z"], "session_id": ["s"], "item_id": ["1"], "event_type": ["view"]})
    with pytest.raises(InvalidRequest, match="min-item-support"):
        split_sessions(build_sessions(validate_events(raw)[0]))


def _protocol_events() -> pd.DataFrame:
    """Training days with items a, b (often); a test session a, a, b, z (z never seen before)."""
    rows = []
    for day in range(1, 9):
        for n in range(3):
            sid = f"d{day}s{n}"
            for k, item in enumerate(["a", "b", "a", "b"]):
                rows.append({"ts": f"2026-01-0{day}T10:0{n}:{10 * k:02d}Z" if day < 10 else "", "session_id": sid,
                             "item_id": item, "event_type": "view"})
    for k, item in enumerate(["a", "a", "b", "z"]):
        rows.append({"ts": f"2026-01-09T12:00:{10 * k:02d}Z", "session_id": "test", "item_id": item,
                     "event_type": "view"})
    return validate_events(pd.DataFrame(rows))[0]


def test_the_next_click_protocol_keeps_repeats_and_unseen_items_as_targets():
    events = _protocol_events()
    filtered = split_sessions(build_sessions(events), test_days=1.0)
    next_click = split_sessions(build_sessions(events, collapse_repeats=False), test_days=1.0, protocol="next-click")
    vocab = next_click.vocab
    a, b = vocab.index_of(["a", "b"]).tolist()
    # Filtered: the repeat a, a collapses and z (seen once) is dropped: a, b -> one target.
    assert [s.tolist() for s in filtered.test] == [[a, b]]
    # Next-click: a, a, b, z -> targets a (a repeat), b and z (unknown: never hit).
    assert [s.tolist() for s in next_click.test] == [[a, a, b, -1]]
    examples = prefix_examples(next_click.test, max_length=20)
    assert examples.targets.tolist() == [a, b, -1] and examples.lengths.tolist() == [1, 2, 3]
    assert next_click.params["protocol"] == "next-click"


def _with_sessions(events: pd.DataFrame, sessions: dict[str, list[tuple[str, str]]]) -> pd.DataFrame:
    rows = [{"ts": ts, "session_id": sid, "item_id": item, "event_type": "view"}
            for sid, clicks in sessions.items() for ts, item in clicks]
    extra = validate_events(pd.DataFrame(rows))[0]
    return pd.concat([events, extra], ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)


def test_next_click_validation_keeps_every_click_like_the_test():
    # Day 8 is the validation period (the day before the test cut); y is never seen in training.
    events = _with_sessions(_protocol_events(), {"valid": [("2026-01-08T11:00:00Z", "a"), ("2026-01-08T11:00:10Z", "y"),
                                                           ("2026-01-08T11:00:20Z", "b")]})
    filtered = split_sessions(build_sessions(events), test_days=1.0)
    next_click = split_sessions(build_sessions(events, collapse_repeats=False), test_days=1.0, protocol="next-click")
    a, b = next_click.vocab.index_of(["a", "b"]).tolist()
    assert [a, b] in [s.tolist() for s in filtered.valid]  # filtered: y left out
    assert [a, -1, b] in [s.tolist() for s in next_click.valid]  # next-click: y a target never hit
    examples = prefix_examples(next_click.valid, max_length=20)
    assert -1 in examples.targets.tolist()
    # What settings are picked on: the same prefixes, less the ones whose target none can hit.
    picked_on = validation_examples(next_click, max_length=20)
    assert len(picked_on) == len(examples) - 1 and (picked_on.targets > 0).all()
    last = int(np.flatnonzero(picked_on.targets == b)[-1])
    assert picked_on.items[last, :picked_on.lengths[last]].tolist() == [a]  # y left out of the prefix
    # The final fit adds only the known clicks to training.
    refit = refit_split(next_click)
    assert refit.train[-1].tolist() == [a, b] and (np.concatenate(refit.train) > 0).all()
    assert refit.item_counts.sum() == sum(len(s) for s in refit.train)


def test_a_next_click_session_is_placed_by_its_last_click_of_any_item():
    # Its frequent clicks before the test cut, its last click (z, seen once) after it: a test
    # session only, never also a training or validation one.
    events = _with_sessions(_protocol_events(), {"late": [("2026-01-08T11:00:00Z", "a"), ("2026-01-08T11:00:10Z", "b"),
                                                          ("2026-01-09T12:10:00Z", "z")]})
    next_click = split_sessions(build_sessions(events, collapse_repeats=False), test_days=1.0, protocol="next-click")
    a, b = next_click.vocab.index_of(["a", "b"]).tolist()
    assert [a, b, -1] in [s.tolist() for s in next_click.test]
    assert [a, b] not in [s.tolist() for s in (*next_click.train, *next_click.valid)]
    assert len(next_click.train) + len(next_click.valid) == 24  # the 8 days' 3 sessions each


def test_a_train_days_split_keeps_as_long_a_history_for_the_blends_counting_parts(chain_frame):
    clicks = build_sessions(chain_frame)
    full = split_sessions(clicks, test_days=1.0)
    short = split_sessions(clicks, test_days=1.0, train_days=1.0)
    assert not full.history and parts_split(full) is full
    # 40 sessions a day: one day of training, and before it as long a span as validation + test
    # (what the published parts add after training).
    assert 0 < len(short.train) < len(full.train)
    assert abs(len(short.history) - (len(short.valid) + len(short.test))) <= 2
    kept = len(short.history) + len(short.train)
    assert [s.tolist() for s in (*short.history, *short.train)] == [s.tolist() for s in full.train[-kept:]]
    assert short.item_counts.sum() == sum(len(s) for s in short.train)  # the model's counts: training only
    parts = parts_split(short)
    assert [s.tolist() for s in parts.train] == [s.tolist() for s in (*short.history, *short.train)]
    assert parts.item_counts.sum() == sum(len(s) for s in parts.train)
    assert parts.valid is short.valid and parts.vocab == short.vocab
    assert np.array_equal(parts.is_tail, short.is_tail)


def test_a_serving_split_counts_every_session_of_the_log(chain_split):
    served = serving_split(chain_split)
    every = [*chain_split.train, *chain_split.valid, *chain_split.test]
    assert len(served.train) == len(every) and not served.valid and not served.test
    assert [s.tolist() for s in served.train] == [s.tolist() for s in every]  # time order kept
    assert served.item_counts.sum() == sum(len(s) for s in every)
    assert served.vocab == chain_split.vocab and np.array_equal(served.is_tail, chain_split.is_tail)
    assert chain_split.valid and chain_split.test  # the fixture's own split is left as it was


def test_a_serving_split_leaves_out_clicks_on_unknown_items():
    events = _protocol_events()
    next_click = split_sessions(build_sessions(events, collapse_repeats=False), test_days=1.0, protocol="next-click")
    a, b = next_click.vocab.index_of(["a", "b"]).tolist()
    served = serving_split(next_click)
    # The test session a, a, b, z: z was never seen in training and has no index to count.
    assert served.train[-1].tolist() == [a, a, b]
    in_validation = sum(int((s == a).sum()) for s in next_click.valid)
    assert served.item_counts[a] == next_click.item_counts[a] + in_validation + 2


def test_unknown_clicks_are_left_out_of_the_prefixes_that_follow_them():
    examples = prefix_examples([np.array([-1, 5, -1, 6])], max_length=20)
    assert examples.targets.tolist() == [5, -1, 6]
    assert examples.items.tolist() == [[0], [5], [5]] and examples.lengths.tolist() == [1, 1, 1]


def test_an_unknown_protocol_is_refused(chain_frame):
    with pytest.raises(InvalidRequest, match="protocol 'leave-one-out' is unknown"):
        split_sessions(build_sessions(chain_frame), protocol="leave-one-out")
