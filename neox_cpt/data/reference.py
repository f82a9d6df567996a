"""NumPy reference implementations of the native kernels in ``csrc/replay_index.cpp``.

Same arguments, same outputs (tests/data/test_kernels.py checks them byte for byte); used when the
extension is not built (``NEOX_CPT_ALLOW_NO_NATIVE=1``) and as the readable statement of each
algorithm. They are written for clarity on small inputs, not speed.

    >>> import numpy as np
    >>> out = np.empty(5, np.int64); permute_range(0, 5, key=7, out=out)
    >>> sorted(out.tolist())
    [0, 1, 2, 3, 4]
"""
from __future__ import annotations

from typing import Optional

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
BLOCK_BITS = 12
BLOCK = 1 << BLOCK_BITS


def splitmix64(z: int) -> int:
    """One splitmix64 step on a Python int (the key schedule of every permutation)."""
    z = (z + GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _splitmix64_vec(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.uint64) + np.uint64(GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def epoch_key(key: int, epoch: int) -> int:
    return splitmix64((key ^ ((epoch * 0xD1B54A32D192ED03) & MASK64)) & MASK64)


class Permutation:
    """Keyed bijection of [0, n): four add/multiply/xorshift rounds on [0, 2^b), cycle-walked into [0, n)."""

    ROUNDS = 4

    def __init__(self, n: int, key: int) -> None:
        self.n = int(n)
        b = 1
        while b < 63 and (1 << b) < self.n:
            b += 1
        self.mask = (1 << b) - 1
        self.shift = (b + 1) // 2
        self.add, self.mul = [], []
        z = int(key) & MASK64
        for _ in range(self.ROUNDS):
            z = splitmix64(z)
            self.add.append(z & self.mask)
            z = splitmix64(z)
            self.mul.append(z | 1)

    def _rounds(self, x: np.ndarray) -> np.ndarray:
        mask = np.uint64(self.mask)
        for a, m in zip(self.add, self.mul):
            x = (x + np.uint64(a)) & mask
            x = (x * np.uint64(m)) & mask
            x = x ^ (x >> np.uint64(self.shift))
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = self._rounds(np.array(x, dtype=np.uint64, ndmin=1))
        todo = np.flatnonzero(x >= self.n)
        while len(todo):  # cycle walking: re-map values that fell outside [0, n)
            x[todo] = self._rounds(x[todo])
            todo = todo[x[todo] >= self.n]
        return x.astype(np.int64)


def epoch_slots(n: int, key: int, positions: np.ndarray) -> np.ndarray:
    """Slot (in the stored document permutation) of each document position (over epochs)."""
    d = np.asarray(positions, np.int64)
    out = np.empty(d.shape, np.int64)
    nfull, tail = n >> BLOCK_BITS, n - ((n >> BLOCK_BITS) << BLOCK_BITS)
    for e in np.unique(d // n).tolist():
        sel = d // n == e
        j = d[sel] - e * n
        slot, i = j >> BLOCK_BITS, j & (BLOCK - 1)
        ek = epoch_key(key, e)
        res = np.empty(j.shape, np.int64)
        full = slot < nfull
        if full.any():
            blk = Permutation(max(nfull, 1), ek)(slot[full]).astype(np.uint64)
            h = _splitmix64_vec(np.uint64(ek) ^ ((blk + np.uint64(1)) * np.uint64(GOLDEN)))
            a = (h & np.uint64(BLOCK - 1)) | np.uint64(1)
            c = (h >> np.uint64(32)) & np.uint64(BLOCK - 1)
            within = (a * i[full].astype(np.uint64) + c) & np.uint64(BLOCK - 1)
            res[full] = (blk * np.uint64(BLOCK) + within).astype(np.int64)
        if (~full).any():
            res[~full] = nfull * BLOCK + Permutation(tail, ek ^ 0x2545F4914F6CDD1D)(i[~full])
        out[sel] = res
    return out


def permute(x: np.ndarray, n: int, key: int, out: np.ndarray) -> None:
    out[:] = Permutation(n, key)(x)


def permute_range(start: int, n: int, key: int, out: np.ndarray) -> None:
    if start + len(out) > n:
        raise IndexError("permute_range: start + len(out) > n")
    out[:] = Permutation(n, key)(np.arange(start, start + len(out), dtype=np.int64))


def sample_index(slot_sizes: np.ndarray, key: int, seq_length: int, state: np.ndarray,
                 doc_out: np.ndarray, offset_out: np.ndarray) -> None:
    """Sample starts by prefix sums + searchsorted over the document lengths in walk order."""
    count, n = len(doc_out), len(slot_sizes)
    if count == 0:
        return
    d0, o0 = int(state[0]), int(state[1])
    starts = o0 + np.arange(count, dtype=np.int64) * seq_length  # token offsets from the start of d0
    lengths = np.zeros(0, np.int64)
    while lengths.sum() <= starts[-1]:  # enough documents to contain the last start
        more = max(64, len(lengths))
        pos = np.arange(d0 + len(lengths), d0 + len(lengths) + more, dtype=np.int64)
        lengths = np.concatenate([lengths, slot_sizes[epoch_slots(n, key, pos)].astype(np.int64)])
    cum_end = np.cumsum(lengths)
    k = np.searchsorted(cum_end, starts, side="right")
    doc_out[:] = d0 + k
    offset_out[:] = starts - (cum_end[k] - lengths[k])
    state[0] = d0 + k[-1]
    state[1] = int(offset_out[-1]) + seq_length


def sample_seek(slot_sizes: np.ndarray, key: int, seq_length: int, j: int, state: np.ndarray) -> None:
    """Where sample j starts: walk only the epoch that holds token j * seq_length."""
    n, tokens_per_epoch = len(slot_sizes), int(np.sum(slot_sizes, dtype=np.int64))
    t = j * seq_length
    e = t // tokens_per_epoch
    lengths = slot_sizes[epoch_slots(n, key, np.arange(e * n, (e + 1) * n))].astype(np.int64)
    k = int(np.searchsorted(np.cumsum(lengths), t - e * tokens_per_epoch, side="right"))
    state[0] = e * n + k
    state[1] = t - e * tokens_per_epoch - int(lengths[:k].sum())


def blend_table(weights: np.ndarray, ids: np.ndarray, table_out: np.ndarray, count_out: np.ndarray) -> None:
    """One period of a group's sequence: pick m takes the largest ``w_t (m + 1) - D c_t`` (lowest t on ties)."""
    period, w = len(table_out), [int(x) for x in weights]
    if sum(w) != period:
        raise ValueError("blend_table: weights must sum to len(table_out)")
    c = [0] * len(w)
    for m in range(period):
        best = max(range(len(w)), key=lambda t: (w[t] * (m + 1) - period * c[t], -t))
        table_out[m] = ids[best]
        count_out[m] = c[best]
        c[best] += 1


def blend(start: int, replay_ppm: int, table_new: np.ndarray, count_new: np.ndarray, table_replay: np.ndarray,
          count_replay: np.ndarray, weight_of: np.ndarray, source_out: np.ndarray, draw_out: np.ndarray) -> None:
    """Closed form per position: the group by the floor rule, then the group's table at its pick index."""
    p = np.arange(start, start + len(source_out), dtype=np.int64)
    before = replay_ppm * p // 1_000_000
    replay = (replay_ppm * (p + 1)) // 1_000_000 > before
    m = np.where(replay, before, p - before)
    for sel, table, count in ((~replay, table_new, count_new), (replay, table_replay, count_replay)):
        q, r = np.divmod(m[sel], len(table))
        s = np.asarray(table)[r].astype(np.int64)
        source_out[sel] = s
        draw_out[sel] = q * np.asarray(weight_of)[s] + np.asarray(count)[r]


def gather(tokens: np.ndarray, pointers: np.ndarray, sizes: np.ndarray, doc_perm: np.ndarray, key: int,
           doc: int, offset: int, out: np.ndarray, itemsize: Optional[int] = None) -> None:
    itemsize = itemsize or tokens.dtype.itemsize
    n, filled, d, o = len(doc_perm), 0, int(doc), int(offset)
    while filled < len(out):
        doc_id = int(doc_perm[int(epoch_slots(n, key, np.array([d]))[0])])
        length = int(sizes[doc_id])
        if o < length:
            take = min(length - o, len(out) - filled)
            first = int(pointers[doc_id]) // itemsize + o
            out[filled: filled + take] = tokens[first: first + take]
            filled += take
            o = 0
        else:
            o -= length
        d += 1
