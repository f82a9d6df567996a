// Keyed pseudo-random permutations computed on the fly (no stored shuffle of epochs x documents).
//
// Permutation: a bijection of [0, n). Domain [0, 2^b) with 2^b >= n (b >= 1); four rounds of
// x = (x + k_r) mod 2^b;  x = x * m_r mod 2^b (m_r odd);  x ^= x >> ceil(b / 2), each a bijection of
// [0, 2^b); values >= n are mapped again until they land in [0, n) ("cycle walking"), which keeps it a
// bijection of [0, n). Round constants come from splitmix64 of the key.
//
// EpochOrder: document position d (over epochs, n documents per epoch) -> slot in a source's stored
// document permutation. Epoch e = d / n visits every slot once: the full blocks of 4096 slots in the
// order of a Permutation keyed by epoch_key(key, e), each block traversed by an affine map
// i -> (a i + c) mod 4096 (a odd, per epoch and block); the partial last block stays last, in the order
// of a Permutation of its own (so a source of fewer than 4096 documents is fully reshuffled every epoch).
// So every epoch has its own order and a source walk touches one 16 KiB block at a time.
//
// NumPy reference: neox_cpt/data/reference.py; keep the two identical (tests compare them).
#pragma once
#include <cstdint>

namespace neox_cpt {

inline uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

inline uint64_t epoch_key(uint64_t key, uint64_t epoch) { return splitmix64(key ^ (epoch * 0xD1B54A32D192ED03ULL)); }

class Permutation {
  public:
    static constexpr int kRounds = 4;

    Permutation(uint64_t n, uint64_t key) : n_(n) {
        int b = 1;
        while (b < 63 && (uint64_t{1} << b) < n) ++b;
        mask_ = (uint64_t{1} << b) - 1;
        shift_ = (b + 1) / 2;
        uint64_t z = key;
        for (int r = 0; r < kRounds; ++r) {
            z = splitmix64(z);
            add_[r] = z & mask_;
            z = splitmix64(z);
            mul_[r] = z | 1;
        }
    }

    uint64_t operator()(uint64_t x) const {
        do {
            for (int r = 0; r < kRounds; ++r) {
                x = (x + add_[r]) & mask_;
                x = (x * mul_[r]) & mask_;
                x ^= x >> shift_;
            }
        } while (x >= n_);
        return x;
    }

  private:
    uint64_t n_, mask_;
    int shift_;
    uint64_t add_[kRounds], mul_[kRounds];
};

class EpochOrder {
  public:
    static constexpr uint64_t kBlockBits = 12;
    static constexpr uint64_t kBlock = uint64_t{1} << kBlockBits;

    EpochOrder(uint64_t n, uint64_t key)
        : n_(n), key_(key), nfull_(n >> kBlockBits), blocks_(1, 0), tail_(n - (nfull_ << kBlockBits)),
          tail_perm_(1, 0) {}

    // Slot of document position d (sequential calls are cheap: epoch and block are cached).
    uint64_t operator()(uint64_t d) {
        locate(d);
        const uint64_t i = (d - epoch_lo_) & (kBlock - 1);
        return slot_in_block(i);
    }

    // Make d's block current; returns how many positions from d to the end of that block.
    uint64_t locate(uint64_t d) {
        if (d < epoch_lo_ || d >= epoch_lo_ + n_) set_epoch(d / n_);
        const uint64_t j = d - epoch_lo_;
        const uint64_t slot = j >> kBlockBits;
        if (slot != cur_slot_) set_block(slot);
        const uint64_t block_len = slot < nfull_ ? kBlock : tail_;
        return block_len - (j & (kBlock - 1));
    }

    // Slot of position i within the current block (call locate() first).
    __attribute__((always_inline)) inline uint64_t slot_in_block(uint64_t i) const {
        if (full_) return base_ + ((a_ * i + c_) & (kBlock - 1));
        return base_ + tail_perm_(i);
    }

  private:
    void set_epoch(uint64_t e) {
        ekey_ = epoch_key(key_, e);
        epoch_lo_ = e * n_;
        blocks_ = Permutation(nfull_ > 0 ? nfull_ : 1, ekey_);
        cur_slot_ = ~uint64_t{0};
    }
    void set_block(uint64_t slot) {
        cur_slot_ = slot;
        if (slot < nfull_) {
            const uint64_t blk = blocks_(slot);
            const uint64_t h = splitmix64(ekey_ ^ ((blk + 1) * 0x9E3779B97F4A7C15ULL));
            a_ = (h & (kBlock - 1)) | 1;
            c_ = (h >> 32) & (kBlock - 1);
            base_ = blk << kBlockBits;
            full_ = true;
        } else {
            full_ = false;
            tail_perm_ = Permutation(tail_, ekey_ ^ 0x2545F4914F6CDD1DULL);
            base_ = nfull_ << kBlockBits;
        }
    }

    uint64_t n_, key_, nfull_;
    Permutation blocks_;
    uint64_t ekey_ = 0, epoch_lo_ = ~uint64_t{0} >> 1, cur_slot_ = ~uint64_t{0};
    uint64_t tail_;
    Permutation tail_perm_;
    uint64_t a_ = 1, c_ = 0, base_ = 0;
    bool full_ = true;
};

}  // namespace neox_cpt
