// Hot loops of the replay index builder (neox_cpt/data/build.py) and of sample reads
// (neox_cpt/data/dataset.py). Each function has a NumPy reference in neox_cpt/data/reference.py with
// the same arguments; tests/data/test_kernels.py requires identical output.
//
// Conventions: the Python side allocates every output (and so chooses its dtype); kernels fill a chunk
// and update a small int64 state array so that a build streams through fixed-size buffers. The GIL is
// released around every loop. Nothing here prints or allocates proportionally to the output.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "permutation.h"

namespace py = pybind11;

namespace {

template <typename T>
T* ptr_of(py::array& a, const char* what) {
    if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(what) + " must be C-contiguous");
    if (!a.writeable()) throw std::invalid_argument(std::string(what) + " must be writeable");
    return static_cast<T*>(a.mutable_data());
}

template <typename T>
const T* cptr_of(const py::array& a, const char* what) {
    if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(what) + " must be C-contiguous");
    return static_cast<const T*>(a.data());
}

bool is(const py::array& a, char kind, int size) { return a.dtype().kind() == kind && a.itemsize() == size; }

// ---------------------------------------------------------------------------------------------------
// permute(x, n, key, out): out[i] = P_key(x[i]) for the keyed bijection P_key of [0, n).
void permute(const py::array& x, uint64_t n, uint64_t key, py::array out) {
    if (!is(x, 'i', 8) || !is(out, 'i', 8)) throw std::invalid_argument("permute: x and out must be int64");
    const int64_t count = x.size();
    if (out.size() != count) throw std::invalid_argument("permute: out must have the size of x");
    const int64_t* xs = cptr_of<int64_t>(x, "x");
    int64_t* os = ptr_of<int64_t>(out, "out");
    for (int64_t i = 0; i < count; ++i)
        if (xs[i] < 0 || static_cast<uint64_t>(xs[i]) >= n) throw std::out_of_range("permute: x outside [0, n)");
    py::gil_scoped_release release;
    neox_cpt::Permutation p(n, key);
    for (int64_t i = 0; i < count; ++i) os[i] = static_cast<int64_t>(p(static_cast<uint64_t>(xs[i])));
}

// permute_range(start, n, key, out): out[i] = P_key(start + i), out int32 or int64 (a stored shuffle).
template <typename T>
void permute_range_impl(uint64_t start, uint64_t n, uint64_t key, T* out, int64_t count) {
    neox_cpt::Permutation p(n, key);
    for (int64_t i = 0; i < count; ++i) out[i] = static_cast<T>(p(start + static_cast<uint64_t>(i)));
}

void permute_range(uint64_t start, uint64_t n, uint64_t key, py::array out) {
    const int64_t count = out.size();
    if (start + static_cast<uint64_t>(count) > n) throw std::out_of_range("permute_range: start + len(out) > n");
    if (is(out, 'i', 4)) {
        int32_t* o = ptr_of<int32_t>(out, "out");
        py::gil_scoped_release release;
        permute_range_impl(start, n, key, o, count);
    } else if (is(out, 'i', 8)) {
        int64_t* o = ptr_of<int64_t>(out, "out");
        py::gil_scoped_release release;
        permute_range_impl(start, n, key, o, count);
    } else {
        throw std::invalid_argument("permute_range: out must be int32 or int64");
    }
}

// ---------------------------------------------------------------------------------------------------
// sample_index(slot_sizes, key, seq_length, state, doc_out, offset_out)
// slot_sizes[s] = tokens of the document in slot s of the source's stored permutation. Document
// position d (over epochs) holds slot EpochOrder(n, key)(d). Sample j starts at token j * seq_length of
// that concatenation: (document position, offset < its length). state = [d, o] is where the next
// sample starts (not yet moved past document ends); a call writes len(doc_out) samples and advances it.
template <typename D, typename O>
__attribute__((flatten)) void sample_index_impl(const int32_t* sizes, uint64_t n, uint64_t key, int64_t seq,
                                                int64_t* state, D* doc_out, O* off_out, int64_t count) {
    // Per block of the epoch order: first gather the lengths (independent loads), then walk them. Splitting
    // the two measured ~20 % faster than one fused loop.
    neox_cpt::EpochOrder order(n, key);
    std::vector<int32_t> lens(neox_cpt::EpochOrder::kBlock);
    int64_t d = state[0], o = state[1], j = 0;
    while (j < count) {
        const uint64_t left = order.locate(static_cast<uint64_t>(d));
        const uint64_t i0 = (static_cast<uint64_t>(d) % n) & (neox_cpt::EpochOrder::kBlock - 1);
        for (uint64_t t = 0; t < left; ++t) lens[t] = sizes[order.slot_in_block(i0 + t)];
        uint64_t t = 0;
        while (t < left && j < count) {
            const int64_t len = lens[t];
            if (o < len) {  // a sample starts in this document
                doc_out[j] = static_cast<D>(d);
                off_out[j] = static_cast<O>(o);
                ++j;
                o += seq;
            } else {  // move to the next document
                o -= len;
                ++d;
                ++t;
            }
        }
    }
    state[0] = d;
    state[1] = o;
}

template <typename D>
void sample_index_off(const int32_t* s, uint64_t n, uint64_t key, int64_t seq, int64_t* st, D* d, py::array& offset_out,
                      int64_t count) {
    if (is(offset_out, 'i', 4)) {
        int32_t* off = ptr_of<int32_t>(offset_out, "offset_out");
        py::gil_scoped_release release;
        sample_index_impl(s, n, key, seq, st, d, off, count);
    } else if (is(offset_out, 'u', 2)) {  // the caller checked that no document is longer than 65536
        uint16_t* off = ptr_of<uint16_t>(offset_out, "offset_out");
        py::gil_scoped_release release;
        sample_index_impl(s, n, key, seq, st, d, off, count);
    } else {
        throw std::invalid_argument("sample_index: offset_out must be int32 or uint16");
    }
}

void sample_index(const py::array& slot_sizes, uint64_t key, int64_t seq_length, py::array state, py::array doc_out,
                  py::array offset_out) {
    if (!is(slot_sizes, 'i', 4)) throw std::invalid_argument("sample_index: slot_sizes must be int32");
    if (!is(state, 'i', 8) || state.size() != 2) throw std::invalid_argument("sample_index: state must be int64[2]");
    const int64_t count = doc_out.size();
    if (offset_out.size() != count) throw std::invalid_argument("sample_index: outputs differ in size");
    const uint64_t n = static_cast<uint64_t>(slot_sizes.size());
    if (n == 0 || seq_length < 1) throw std::invalid_argument("sample_index: need documents and seq_length >= 1");
    const int32_t* s = cptr_of<int32_t>(slot_sizes, "slot_sizes");
    int64_t* st = ptr_of<int64_t>(state, "state");
    if (st[0] < 0 || st[1] < 0) throw std::invalid_argument("sample_index: negative state");
    if (is(doc_out, 'i', 4)) {
        sample_index_off(s, n, key, seq_length, st, ptr_of<int32_t>(doc_out, "doc_out"), offset_out, count);
    } else if (is(doc_out, 'i', 8)) {
        sample_index_off(s, n, key, seq_length, st, ptr_of<int64_t>(doc_out, "doc_out"), offset_out, count);
    } else {
        throw std::invalid_argument("sample_index: doc_out must be int32 or int64");
    }
}

// sample_seek(slot_sizes, key, seq_length, j, state): state = [d, o] where sample j starts (d the
// document position over epochs, o < its length): one epoch of slot_sizes sums to tokens_per_epoch, so
// only the epoch of token j * seq_length is walked. Lets several threads build disjoint sample ranges.
void sample_seek(const py::array& slot_sizes, uint64_t key, int64_t seq_length, int64_t j, py::array state) {
    if (!is(slot_sizes, 'i', 4)) throw std::invalid_argument("sample_seek: slot_sizes must be int32");
    if (!is(state, 'i', 8) || state.size() != 2) throw std::invalid_argument("sample_seek: state must be int64[2]");
    const uint64_t n = static_cast<uint64_t>(slot_sizes.size());
    const int32_t* s = cptr_of<int32_t>(slot_sizes, "slot_sizes");
    int64_t* st = ptr_of<int64_t>(state, "state");
    if (n == 0 || seq_length < 1 || j < 0) throw std::invalid_argument("sample_seek: bad arguments");
    py::gil_scoped_release release;
    int64_t tokens_per_epoch = 0;
    for (uint64_t i = 0; i < n; ++i) tokens_per_epoch += s[i];
    if (tokens_per_epoch <= 0) throw std::invalid_argument("sample_seek: no tokens");
    const int64_t t = j * seq_length;
    const int64_t e = t / tokens_per_epoch;
    int64_t d = e * static_cast<int64_t>(n), o = t - e * tokens_per_epoch;
    neox_cpt::EpochOrder order(n, key);
    while (true) {
        const uint64_t left = order.locate(static_cast<uint64_t>(d));
        uint64_t i = (static_cast<uint64_t>(d) % n) & (neox_cpt::EpochOrder::kBlock - 1);
        const uint64_t end = i + left;
        for (; i < end; ++i) {
            const int64_t len = s[order.slot_in_block(i)];
            if (o < len) {
                st[0] = d;
                st[1] = o;
                return;
            }
            o -= len;
            ++d;
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// blend_table(weights, ids, table_out, count_out): one period of a group's source sequence. weights are
// integers summing to D = len(table_out); pick m (0-based) takes the member with the largest deficit
// weights[t] * (m + 1) - D * c_t (lowest index on ties), table_out[m] = ids[t], count_out[m] = c_t
// before the pick. After D picks every c_t = weights[t], so the sequence repeats with period D.
template <typename S>
void blend_table_impl(const int64_t* w, const int64_t* ids, int64_t k, int64_t period, S* table, int32_t* cnt) {
    std::vector<int64_t> c(static_cast<size_t>(k), 0);
    for (int64_t m = 0; m < period; ++m) {
        int64_t best = 0, best_deficit = w[0] * (m + 1) - period * c[0];
        for (int64_t t = 1; t < k; ++t) {
            const int64_t deficit = w[t] * (m + 1) - period * c[t];
            const bool better = deficit > best_deficit;
            best = better ? t : best;
            best_deficit = better ? deficit : best_deficit;
        }
        table[m] = static_cast<S>(ids[best]);
        cnt[m] = static_cast<int32_t>(c[best]);
        ++c[best];
    }
}

void blend_table(const py::array& weights, const py::array& ids, py::array table_out, py::array count_out) {
    if (!is(weights, 'i', 8) || !is(ids, 'i', 8) || ids.size() != weights.size() || weights.size() == 0)
        throw std::invalid_argument("blend_table: weights and ids must be int64[k], k >= 1");
    if (!is(count_out, 'i', 4) || count_out.size() != table_out.size())
        throw std::invalid_argument("blend_table: count_out must be int32 of the size of table_out");
    const int64_t k = weights.size(), period = table_out.size();
    const int64_t* w = cptr_of<int64_t>(weights, "weights");
    int64_t total = 0;
    for (int64_t t = 0; t < k; ++t) {
        if (w[t] < 0) throw std::invalid_argument("blend_table: negative weight");
        total += w[t];
    }
    if (total != period || period > (int64_t{1} << 31)) throw std::invalid_argument("blend_table: weights must sum to len(table_out)");
    const int64_t* i = cptr_of<int64_t>(ids, "ids");
    int32_t* cnt = ptr_of<int32_t>(count_out, "count_out");
    if (is(table_out, 'u', 1)) {
        uint8_t* tb = ptr_of<uint8_t>(table_out, "table_out");
        py::gil_scoped_release release;
        blend_table_impl(w, i, k, period, tb, cnt);
    } else if (is(table_out, 'u', 2)) {
        uint16_t* tb = ptr_of<uint16_t>(table_out, "table_out");
        py::gil_scoped_release release;
        blend_table_impl(w, i, k, period, tb, cnt);
    } else {
        throw std::invalid_argument("blend_table: table_out must be uint8 or uint16");
    }
}

// blend(start, replay_ppm, table_new, count_new, table_replay, count_replay, weight_of, source_out, draw_out)
// Position p is a replay position iff floor(r (p + 1) / 1e6) > floor(r p / 1e6), r = replay_ppm; it is the
// group's pick m = floor(r p / 1e6) (replay) or p - floor(r p / 1e6) (new), which takes source
// s = table[m mod D] as its draw (m div D) * weight_of[s] + count[m mod D]. Closed form: no state, any
// chunk can be computed on its own.
template <typename S, typename K, int64_t kPeriod>
void blend_impl(int64_t start, int64_t ppm, const S* const* table, const int32_t* const* cnt, const int64_t* period_of,
                const int64_t* weight_of, S* src, K* draw, int64_t count) {
    constexpr int64_t kDen = 1000000;
    for (int64_t k = 0; k < count; ++k) {
        const int64_t p = start + k;
        const int64_t before = (ppm * p) / kDen;
        const int g = (ppm * (p + 1)) / kDen > before ? 1 : 0;
        const int64_t m = g ? before : p - before;
        const int64_t period = kPeriod > 0 ? kPeriod : period_of[g];
        const int64_t q = m / period, r = m - q * period;
        const S s = table[g][r];
        src[k] = s;
        draw[k] = static_cast<K>(q * weight_of[s] + cnt[g][r]);
    }
}

template <typename S, typename K>
void blend_run(int64_t start, int64_t ppm, const S* const* table, const int32_t* const* cnt, const int64_t* period_of,
               const int64_t* weight_of, S* src, K* draw, int64_t count) {
    if (period_of[0] == 1000000 && period_of[1] == 1000000)
        blend_impl<S, K, 1000000>(start, ppm, table, cnt, period_of, weight_of, src, draw, count);
    else
        blend_impl<S, K, 0>(start, ppm, table, cnt, period_of, weight_of, src, draw, count);
}

template <typename S>
void blend_typed(int64_t start, int64_t ppm, const py::array* tables, const py::array* counts, const int64_t* w,
                 py::array& source_out, py::array& draw_out) {
    const S* table[2] = {cptr_of<S>(tables[0], "table"), cptr_of<S>(tables[1], "table")};
    const int32_t* cnt[2] = {cptr_of<int32_t>(counts[0], "count"), cptr_of<int32_t>(counts[1], "count")};
    const int64_t period_of[2] = {static_cast<int64_t>(tables[0].size()), static_cast<int64_t>(tables[1].size())};
    S* src = ptr_of<S>(source_out, "source_out");
    const int64_t count = source_out.size();
    if (is(draw_out, 'i', 4)) {
        int32_t* d = ptr_of<int32_t>(draw_out, "draw_out");
        py::gil_scoped_release release;
        blend_run(start, ppm, table, cnt, period_of, w, src, d, count);
    } else if (is(draw_out, 'i', 8)) {
        int64_t* d = ptr_of<int64_t>(draw_out, "draw_out");
        py::gil_scoped_release release;
        blend_run(start, ppm, table, cnt, period_of, w, src, d, count);
    } else {
        throw std::invalid_argument("blend: draw_out must be int32 or int64");
    }
}

void blend(int64_t start, int64_t replay_ppm, const py::array& table_new, const py::array& count_new,
           const py::array& table_replay, const py::array& count_replay, const py::array& weight_of,
           py::array source_out, py::array draw_out) {
    if (replay_ppm < 0 || replay_ppm >= 1000000) throw std::invalid_argument("blend: replay_ppm outside [0, 1e6)");
    if (start < 0) throw std::invalid_argument("blend: negative start");
    if (!is(weight_of, 'i', 8)) throw std::invalid_argument("blend: weight_of must be int64[n_sources]");
    if (table_new.size() == 0 || table_replay.size() == 0) throw std::invalid_argument("blend: empty table");
    if (count_new.size() != table_new.size() || count_replay.size() != table_replay.size() || !is(count_new, 'i', 4) ||
        !is(count_replay, 'i', 4))
        throw std::invalid_argument("blend: counts must be int32 of the size of their tables");
    if (draw_out.size() != source_out.size()) throw std::invalid_argument("blend: outputs differ in size");
    const py::array tables[2] = {table_new, table_replay}, counts[2] = {count_new, count_replay};
    const int64_t* w = cptr_of<int64_t>(weight_of, "weight_of");
    const int64_t ns = weight_of.size();
    for (const py::array& t : tables)
        if (t.dtype().kind() != source_out.dtype().kind() || t.itemsize() != source_out.itemsize())
            throw std::invalid_argument("blend: tables and source_out must share a dtype");
    if (is(source_out, 'u', 1)) {
        for (const py::array& t : tables)
            for (int64_t r = 0; r < t.size(); ++r)
                if (static_cast<const uint8_t*>(t.data())[r] >= ns) throw std::out_of_range("blend: table names a missing source");
        blend_typed<uint8_t>(start, replay_ppm, tables, counts, w, source_out, draw_out);
    } else if (is(source_out, 'u', 2)) {
        for (const py::array& t : tables)
            for (int64_t r = 0; r < t.size(); ++r)
                if (static_cast<const uint16_t*>(t.data())[r] >= ns) throw std::out_of_range("blend: table names a missing source");
        blend_typed<uint16_t>(start, replay_ppm, tables, counts, w, source_out, draw_out);
    } else {
        throw std::invalid_argument("blend: source_out must be uint8 or uint16");
    }
}

// ---------------------------------------------------------------------------------------------------
// gather(tokens, pointers, sizes, doc_perm, key, doc, offset, out): out = the len(out) tokens that start
// at `offset` in document position `doc` (the order sample_index walks), cast to int64. doc_perm is the
// source's stored permutation (slot -> document id), int32 or int64.
template <typename T, typename P>
__attribute__((flatten)) void gather_impl(const T* tokens, int64_t num_tokens, const int64_t* pointers, const int32_t* sizes, const P* perm,
                 uint64_t n, uint64_t key, int64_t d, int64_t o, int64_t* out, int64_t count) {
    neox_cpt::EpochOrder order(n, key);
    int64_t filled = 0;
    while (filled < count) {
        const int64_t doc = static_cast<int64_t>(perm[order(static_cast<uint64_t>(d))]);
        const int64_t len = sizes[doc];
        if (o < len) {
            int64_t take = len - o;
            if (take > count - filled) take = count - filled;
            const int64_t first = pointers[doc] / static_cast<int64_t>(sizeof(T)) + o;
            if (first < 0 || first + take > num_tokens) throw std::out_of_range("gather: document outside .bin");
            for (int64_t t = 0; t < take; ++t) out[filled + t] = static_cast<int64_t>(tokens[first + t]);
            filled += take;
            o = 0;
        } else {
            o -= len;
        }
        ++d;
    }
}

template <typename P>
void gather_tokens(const py::array& tokens, const int64_t* p, const int32_t* s, const P* perm, uint64_t n, uint64_t key,
                   int64_t doc, int64_t offset, int64_t* o, int64_t count) {
    const int64_t nt = tokens.size();
    const char k = tokens.dtype().kind();
    const auto sz = tokens.itemsize();
    const void* data = tokens.data();
    py::gil_scoped_release release;
    if (k == 'u' && sz == 2) gather_impl(static_cast<const uint16_t*>(data), nt, p, s, perm, n, key, doc, offset, o, count);
    else if (k == 'i' && sz == 4) gather_impl(static_cast<const int32_t*>(data), nt, p, s, perm, n, key, doc, offset, o, count);
    else if (k == 'u' && sz == 1) gather_impl(static_cast<const uint8_t*>(data), nt, p, s, perm, n, key, doc, offset, o, count);
    else if (k == 'i' && sz == 1) gather_impl(static_cast<const int8_t*>(data), nt, p, s, perm, n, key, doc, offset, o, count);
    else if (k == 'i' && sz == 2) gather_impl(static_cast<const int16_t*>(data), nt, p, s, perm, n, key, doc, offset, o, count);
    else if (k == 'i' && sz == 8) gather_impl(static_cast<const int64_t*>(data), nt, p, s, perm, n, key, doc, offset, o, count);
    else throw std::invalid_argument("gather: tokens must be an integer array (uint8/int8/int16/uint16/int32/int64)");
}

void gather(const py::array& tokens, const py::array& pointers, const py::array& sizes, const py::array& doc_perm,
            uint64_t key, int64_t doc, int64_t offset, py::array out) {
    if (!is(pointers, 'i', 8) || !is(sizes, 'i', 4) || pointers.size() != sizes.size())
        throw std::invalid_argument("gather: pointers int64[n] and sizes int32[n] required");
    if (!is(out, 'i', 8)) throw std::invalid_argument("gather: out must be int64");
    if (!(tokens.flags() & py::array::c_style)) throw std::invalid_argument("gather: tokens must be C-contiguous");
    const uint64_t n = static_cast<uint64_t>(doc_perm.size());
    if (n == 0 || doc < 0 || offset < 0) throw std::invalid_argument("gather: no documents or negative position");
    const int64_t* p = cptr_of<int64_t>(pointers, "pointers");
    const int32_t* s = cptr_of<int32_t>(sizes, "sizes");
    int64_t* o = ptr_of<int64_t>(out, "out");
    if (is(doc_perm, 'i', 4)) gather_tokens(tokens, p, s, cptr_of<int32_t>(doc_perm, "doc_perm"), n, key, doc, offset, o, out.size());
    else if (is(doc_perm, 'i', 8)) gather_tokens(tokens, p, s, cptr_of<int64_t>(doc_perm, "doc_perm"), n, key, doc, offset, o, out.size());
    else throw std::invalid_argument("gather: doc_perm must be int32 or int64");
}

}  // namespace

void register_replay_kernels(py::module_& m) {
    m.def("permute", &permute, py::arg("x"), py::arg("n"), py::arg("key"), py::arg("out"));
    m.def("permute_range", &permute_range, py::arg("start"), py::arg("n"), py::arg("key"), py::arg("out"));
    m.def("sample_index", &sample_index, py::arg("slot_sizes"), py::arg("key"), py::arg("seq_length"), py::arg("state"),
          py::arg("doc_out"), py::arg("offset_out"));
    m.def("sample_seek", &sample_seek, py::arg("slot_sizes"), py::arg("key"), py::arg("seq_length"), py::arg("j"),
          py::arg("state"));
    m.def("blend_table", &blend_table, py::arg("weights"), py::arg("ids"), py::arg("table_out"), py::arg("count_out"));
    m.def("blend", &blend, py::arg("start"), py::arg("replay_ppm"), py::arg("table_new"), py::arg("count_new"),
          py::arg("table_replay"), py::arg("count_replay"), py::arg("weight_of"), py::arg("source_out"),
          py::arg("draw_out"));
    m.def("gather", &gather, py::arg("tokens"), py::arg("pointers"), py::arg("sizes"), py::arg("doc_perm"), py::arg("key"),
          py::arg("doc"),
          py::arg("offset"), py::arg("out"));
}
