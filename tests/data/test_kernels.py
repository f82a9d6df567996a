"""Native kernels (csrc/replay_index.cpp) against their NumPy references (neox_cpt/data/reference.py)."""
import numpy as np
import pytest

from neox_cpt.data import reference as ref
from neox_cpt.native import NATIVE

native = pytest.mark.skipif(NATIVE is None, reason="neox_cpt._native not built")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4097, 12345])
def test_permutation_is_a_bijection_and_native_matches(n):
    out = np.empty(n, np.int64)
    ref.permute_range(0, n, 99, out)
    assert sorted(out.tolist()) == list(range(n))
    if NATIVE is not None:
        nat = np.empty(n, np.int64)
        NATIVE.permute_range(0, n, 99, nat)
        assert np.array_equal(nat, out)
        nat32 = np.empty(n - n // 2, np.int32)
        NATIVE.permute_range(n // 2, n, 99, nat32)
        assert np.array_equal(nat32, out[n // 2:])
        x = np.arange(n, dtype=np.int64)[::-1].copy()
        NATIVE.permute(x, n, 99, nat)
        assert np.array_equal(nat, out[::-1])


def test_permutation_depends_on_key_and_looks_shuffled():
    a, b = np.empty(1000, np.int64), np.empty(1000, np.int64)
    ref.permute_range(0, 1000, 1, a)
    ref.permute_range(0, 1000, 2, b)
    assert not np.array_equal(a, b)
    assert abs(np.corrcoef(np.arange(1000), a)[0, 1]) < 0.1  # no visible trend


@pytest.mark.parametrize("n", [5, 4096, 4096 * 3 + 17])
def test_epoch_order_visits_every_slot_once_per_epoch_in_a_new_order(n):
    slots = ref.epoch_slots(n, 1234, np.arange(3 * n))
    for e in range(3):
        assert sorted(slots[e * n:(e + 1) * n].tolist()) == list(range(n))
    assert not np.array_equal(slots[:n], slots[n:2 * n])  # a new order every epoch, small sources too


@native
@pytest.mark.parametrize("n_docs,seq,chunks,doc_dtype,off_dtype", [
    (1, 4, [3, 5], np.int64, np.int32), (7, 5, [10, 1, 20], np.int32, np.uint16),
    (5000, 64, [700, 1300, 1], np.int32, np.int32), (4100, 3, [4000, 4000], np.int64, np.uint16)])
def test_sample_index_native_equals_numpy(n_docs, seq, chunks, doc_dtype, off_dtype):
    sizes = np.random.default_rng(n_docs).integers(0, 40, n_docs).astype(np.int32)
    sizes[0] = max(sizes[0], 1)
    outs = []
    for impl in (NATIVE, ref):
        state = np.zeros(2, np.int64)
        docs, offs = [], []
        for m in chunks:
            d, o = np.empty(m, doc_dtype), np.empty(m, off_dtype)
            impl.sample_index(sizes, 77, seq, state, d, o)
            docs.append(d)
            offs.append(o)
        outs.append((np.concatenate(docs), np.concatenate(offs)))
    assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])


def test_sample_index_worked_example():
    # One epoch of 3 documents (sizes in walk order 4, 0, 6, then the next epoch's order), seq_length 3:
    # sample j starts at token 3 j of the concatenation.
    sizes = np.array([4, 0, 6], np.int32)
    order = ref.epoch_slots(3, 5, np.arange(6))
    walk = sizes[order]
    cum = np.concatenate([[0], np.cumsum(walk)])
    state = np.zeros(2, np.int64)
    d, o = np.empty(5, np.int64), np.empty(5, np.int32)
    ref.sample_index(sizes, 5, 3, state, d, o)
    for j in range(5):
        t = 3 * j
        expect_d = int(np.searchsorted(cum, t, side="right") - 1)
        while walk[expect_d] == 0:
            expect_d += 1
        assert (d[j], o[j]) == (expect_d, t - cum[expect_d])


def direct_greedy(weights, picks):
    """The group sequence straight from its definition (no table, no period)."""
    period, c, seq = sum(weights), [0] * len(weights), []
    for m in range(picks):
        best = max(range(len(weights)), key=lambda t: (weights[t] * (m + 1) - period * c[t], -t))
        seq.append((best, c[best]))
        c[best] += 1
    return seq


@pytest.mark.parametrize("impl", [ref] + ([NATIVE] if NATIVE is not None else []), ids=lambda m: m.__name__)
@pytest.mark.parametrize("weights", [[7], [3, 4], [500, 300, 200], [1, 1, 1, 997], [250] * 4])
def test_blend_table_is_one_period_of_the_greedy(impl, weights):
    table, count = np.empty(sum(weights), np.uint8), np.empty(sum(weights), np.int32)
    ids = np.arange(10, 10 + len(weights), dtype=np.int64)
    impl.blend_table(np.array(weights, np.int64), ids, table, count)
    greedy = direct_greedy(weights, 3 * sum(weights))
    assert [(t - 10, c) for t, c in zip(table.tolist(), count.tolist())] == greedy[: sum(weights)]
    # the greedy really is periodic: after D picks every source has exactly its weight
    assert greedy[sum(weights):] == [(t, c + k * weights[t]) for k in (1, 2) for t, c in greedy[: sum(weights)]]
    err = [abs(sum(1 for t, _ in greedy[: m + 1] if t == i) - weights[i] * (m + 1) / sum(weights))
           for m in range(len(greedy)) for i in range(len(weights))]
    assert max(err) < 1  # within one sample of the share at every prefix of the group


@native
@pytest.mark.parametrize("new_w,rep_w,ppm,src_dtype,draw_dtype", [
    ([1000], [1000], 50_000, np.uint8, np.int32), ([600, 400], [1000], 0, np.uint8, np.int64),
    ([500, 300, 200], [700, 300], 333_333, np.uint16, np.int32), ([1000], [1, 999], 999_999, np.uint8, np.int32)])
def test_blend_native_equals_numpy_across_periods(new_w, rep_w, ppm, src_dtype, draw_dtype):
    k = len(new_w)
    weight_of = np.array(new_w + rep_w, np.int64)
    tables = []
    for w, ids in ((new_w, range(k)), (rep_w, range(k, k + len(rep_w)))):
        t, c = np.empty(1000, src_dtype), np.empty(1000, np.int32)
        ref.blend_table(np.array(w, np.int64), np.array(list(ids), np.int64), t, c)
        tables += [t, c]
    outs = []
    for impl in (NATIVE, ref):
        parts = []
        for start, m in ((0, 1500), (1500, 1), (1501, 4000), (10_000_000, 50)):
            s, d = np.empty(m, src_dtype), np.empty(m, draw_dtype)
            impl.blend(start, ppm, *tables, weight_of, s, d)
            parts.append((s, d))
        outs.append(parts)
    for (s1, d1), (s2, d2) in zip(*outs):
        assert np.array_equal(s1, s2) and np.array_equal(d1, d2)
    src = np.concatenate([p[0] for p in outs[0][:3]]).astype(np.int64)
    draw = np.concatenate([p[1] for p in outs[0][:3]]).astype(np.int64)
    for i in range(len(weight_of)):  # draw k of a source is its k-th position, across table periods
        assert draw[src == i].tolist() == list(range(int((src == i).sum())))


@native
@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.uint8, np.int64])
def test_gather_native_equals_numpy(dtype):
    rng = np.random.default_rng(3)
    sizes = rng.integers(0, 9, 50).astype(np.int32)
    sizes[0] = 5
    pointers = np.concatenate([[0], np.cumsum(sizes[:-1])]).astype(np.int64) * np.dtype(dtype).itemsize
    tokens = rng.integers(0, 200, int(sizes.sum())).astype(dtype)
    perm = np.empty(50, np.int32)
    ref.permute_range(0, 50, 4, perm)
    for doc, off, length in ((0, 0, 17), (3, 2, 40), (120, 0, 9)):
        a, b = np.empty(length, np.int64), np.empty(length, np.int64)
        NATIVE.gather(tokens, pointers, sizes, perm, 11, doc, off, a)
        ref.gather(tokens, pointers, sizes, perm, 11, doc, off, b)
        assert np.array_equal(a, b)


@pytest.mark.parametrize("impl", [ref] + ([NATIVE] if NATIVE is not None else []), ids=lambda m: m.__name__)
def test_sample_seek_lands_where_the_sequential_walk_is(impl):
    sizes = np.random.default_rng(5).integers(0, 30, 4100).astype(np.int32)
    seq, total = 7, 3 * int(sizes.sum()) // 7  # three epochs of samples
    state = np.zeros(2, np.int64)
    d, o = np.empty(total, np.int64), np.empty(total, np.int32)
    ref.sample_index(sizes, 9, seq, state, d, o)
    for j in (0, 1, 57, total // 3, total // 3 + 1, total - 1):
        seek = np.zeros(2, np.int64)
        impl.sample_seek(sizes, 9, seq, j, seek)
        assert (seek[0], seek[1]) == (d[j], o[j])
