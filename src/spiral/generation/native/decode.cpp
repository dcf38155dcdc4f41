// Fused CPU kernels for one decode step of a Llama-architecture model (spiral.engine.FastGenerator).
//
// Built on first use by spiral/native/__init__.py (the system C++ compiler, -O3 -march=native -fopenmp) and
// loaded with ctypes; every entry point takes raw pointers to contiguous tensors. Each kernel exists for fp32
// (float) and bf16 (uint16_t holding the bf16 bits); arithmetic is in fp32. Element-wise steps follow the Hugging
// Face Llama forward op by op and round to bf16 where the bf16 model rounds (round to nearest even, as torch
// does); products and sums may be fused (-ffp-contract=fast), so fp32 results can differ from torch's in the last
// bit. Attention keeps scores, softmax and the weighted values in fp32 (the bf16 model rounds scores and
// probabilities to bf16), so its output is at least as close to the fp32 computation.
// OpenMP: the library links libgomp.so.1, which resolves to the copy torch has already loaded, so these loops
// share torch's thread pool and thread count.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

// Small helpers are forced inline: the hot loops only vectorise with them inlined (GCC stopped inlining
// exp_neg once it had several callers, and the SiLU loop ran 8x slower).
#define SPIRAL_INLINE inline __attribute__((always_inline))

namespace {

SPIRAL_INLINE float bf2f(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

SPIRAL_INLINE uint16_t f2bf(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Storage types: load as float, store with the rounding of the type, and round an intermediate result to
// what the type would hold (identity for float).
SPIRAL_INLINE float ld(const float* p, long i) { return p[i]; }
SPIRAL_INLINE float ld(const uint16_t* p, long i) { return bf2f(p[i]); }
SPIRAL_INLINE void st(float* p, long i, float v) { p[i] = v; }
SPIRAL_INLINE void st(uint16_t* p, long i, float v) { p[i] = f2bf(v); }
template <typename T> SPIRAL_INLINE float rnd(float v);
template <> SPIRAL_INLINE float rnd<float>(float v) { return v; }
template <> SPIRAL_INLINE float rnd<uint16_t>(float v) { return bf2f(f2bf(v)); }

// exp(x) for x <= 0 by range reduction and a degree-7 polynomial: within ~2 ulp of expf, and (unlike a libm
// call) vectorised by the compiler.
SPIRAL_INLINE float exp_neg(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float n = std::nearbyint(x * 1.44269504088896341f);
  float r = std::fma(n, -0.693145751953125f, x);
  r = std::fma(n, -1.428606765330187045e-06f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p * r, r, r) + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

#if defined(__AVX512BF16__)
// AVX-512 forms of the bf16 element-wise steps (RoPE, norms, activation, attention's masks and outputs): the
// compiler left the generic loops scalar, at 3-4 cycles an element. The same operations in the same order; bf16
// loads widen, stores round to nearest even.
SPIRAL_INLINE __m512 ld16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
SPIRAL_INLINE __m512 rnd16(__m512 v) {  // v rounded to bf16, as a float
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v)), 16));
}
SPIRAL_INLINE void st16(uint16_t* p, __m512 v, __mmask16 m) {
  _mm256_mask_storeu_epi16(p, m, (__m256i)_mm512_cvtneps_pbh(v));
}
SPIRAL_INLINE __mmask16 tail_mask(int i, int n) {
  return n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
}
SPIRAL_INLINE __m512 exp_neg16(__m512 x) {  // exp_neg, 16 lanes
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693145751953125f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(-1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}
#endif

// RoPE as Hugging Face applies it: out = x * cos + rotate_half(x) * sin, each product and the sum rounded to T.
template <typename T>
SPIRAL_INLINE void rope(const T* x, const T* cos, const T* sin, int D, float* out) {
  const int half = D / 2;
#if defined(__AVX512BF16__)
  if constexpr (sizeof(T) == 2) {
    if (half % 16 == 0) {
      for (int d = 0; d < half; d += 16) {
        const __m512 x1 = ld16(x + d, 0xffff), x2 = ld16(x + d + half, 0xffff);
        const __m512 lo = _mm512_add_ps(rnd16(_mm512_mul_ps(x1, ld16(cos + d, 0xffff))),
                                        rnd16(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), x2), ld16(sin + d, 0xffff))));
        const __m512 hi = _mm512_add_ps(rnd16(_mm512_mul_ps(x2, ld16(cos + d + half, 0xffff))),
                                        rnd16(_mm512_mul_ps(x1, ld16(sin + d + half, 0xffff))));
        _mm512_storeu_ps(out + d, rnd16(lo));
        _mm512_storeu_ps(out + d + half, rnd16(hi));
      }
      return;
    }
  }
#endif
  for (int d = 0; d < half; ++d)
    out[d] = rnd<T>(rnd<T>(ld(x, d) * ld(cos, d)) + rnd<T>(-ld(x, d + half) * ld(sin, d)));
  for (int d = half; d < D; ++d)
    out[d] = rnd<T>(rnd<T>(ld(x, d) * ld(cos, d)) + rnd<T>(ld(x, d - half) * ld(sin, d)));
}

// Vectors of 16 floats (GCC/Clang vector extensions: one AVX-512 register, two AVX2 ones, four NEON ones).
typedef float v16f __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));

SPIRAL_INLINE v16f load16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// Cache layouts, per (row, KV head) block of D x Tslots elements:
// - fp32: keys transposed, kt[d * Tslots + t], so that one vector op scores 16 slots; values v[t * D + d].
// - bf16: keys in blocks of 16 slots, each block (D / 2, 16, 2): kt[((t / 16) * (D / 2) + d / 2) * 32 +
//   (t % 16) * 2 + d % 2], and values with the slots paired, v[((t / 2) * D + d) * 2 + t % 2]: each 32-bit lane
//   holds a pair of bf16 numbers that one dot-product instruction (AVX512-BF16 vdpbf16ps) multiplies and adds,
//   or that two bit operations widen. A block of keys is 32 consecutive cache lines (D = 64), so a row's keys
//   for a decode step are one address range, which the software prefetch (Ahead) walks line by line. (This
//   layout alone, without that prefetch, measured the same as the slots-inner one of the fp32 keys.)
SPIRAL_INLINE void put_k(float* kt, long Tslots, int, int t, int d, float v) { kt[d * Tslots + t] = v; }
SPIRAL_INLINE void put_k(uint16_t* kt, long, int D, int t, int d, float v) {
  kt[((static_cast<long>(t / 16) * (D / 2) + d / 2) * 16 + t % 16) * 2 + d % 2] = f2bf(v);
}
SPIRAL_INLINE void put_v(float* vh, int D, int t, int d, float v) { vh[static_cast<long>(t) * D + d] = v; }
SPIRAL_INLINE void put_v(uint16_t* vh, int D, int t, int d, uint16_t v) {
  vh[(static_cast<long>(t / 2) * D + d) * 2 + t % 2] = v;
}

// The two bf16 numbers of each 32-bit lane as floats: the low (even index) and the high (odd index) one.
SPIRAL_INLINE void widen_pairs(const uint16_t* p, v16f& even, v16f& odd) {
  v16u w;
  std::memcpy(&w, p, sizeof w);
  const v16u lo = w << 16, hi = w & 0xffff0000u;
  std::memcpy(&even, &lo, sizeof even);
  std::memcpy(&odd, &hi, sizeof odd);
}

// Two floats that hold bf16 values (already rounded) as one lane of bf16 pairs: lo in the low half.
SPIRAL_INLINE uint32_t bf16_pair(float lo, float hi) {
  uint32_t a, b;
  std::memcpy(&a, &lo, 4);
  std::memcpy(&b, &hi, 4);
  return (a >> 16) | (b & 0xffff0000u);
}

// Software prefetch of the cache lines the next attention task reads from its row's own cache (a decode step's
// keys and values of one row are read once, from memory): a few lines per step of the current task's loops, so
// that the transfer overlaps its work. Two ranges (keys, values), taken in order.
struct Ahead {
  const char* p = nullptr;
  const char* end = nullptr;
  const char* p2 = nullptr;
  const char* end2 = nullptr;
  SPIRAL_INLINE void step(int lines) {
    for (int i = 0; i < lines; ++i) {
      if (p >= end) {
        if (p2 >= end2) return;
        p = p2, end = end2, p2 = end2;
      }
      __builtin_prefetch(p, 0, 3);
      p += 64;
    }
  }
};

// Scores (scaled) of the G queries q (G x D floats) against the keys of slots [t0, t1) (t0, t1 multiples of 16)
// of a key block kt (`stride` slots; unused by the bf16 layout), written to sc[g * n + off + t - t0].
template <int D, int G>
inline void scores(const float* q, const float* kt, long stride, int t0, int t1, float scale, float* sc, long n,
                   long off, Ahead* = nullptr) {
  constexpr int P = 4;  // independent partial sums per query (hides the add latency)
  for (int t = t0; t < t1; t += 16) {
    v16f acc[G][P] = {};
    for (int d = 0; d < D; d += P)
      for (int p = 0; p < P; ++p) {
        const v16f k = load16(kt + (d + p) * stride + t);
        for (int g = 0; g < G; ++g) acc[g][p] += q[g * D + d + p] * k;
      }
    for (int g = 0; g < G; ++g) {
      const v16f a = ((acc[g][0] + acc[g][1]) + (acc[g][2] + acc[g][3])) * scale;
      std::memcpy(sc + g * n + off + (t - t0), &a, sizeof(v16f));
    }
  }
}

template <int D, int G>
inline void scores(const float* q, const uint16_t* kt, long /*stride: blocks are contiguous*/, int t0, int t1,
                   float scale, float* sc, long n, long off, Ahead* ahead = nullptr) {
#if defined(__AVX512BF16__)
  const uint32_t* qp = reinterpret_cast<const uint32_t*>(q + G * D);  // the queries' dimension pairs in bf16
#endif
  for (int t = t0; t < t1; t += 16) {
    const uint16_t* kp = kt + static_cast<long>(t) * D;  // the block of slots [t, t + 16)
    if (ahead != nullptr) ahead->step(4);
#if defined(__AVX512BF16__)
    __m512 a0[G], a1[G];  // two partial sums per query (hides the latency)
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) a0[g] = a1[g] = _mm512_setzero_ps();
    for (int j = 0; j < D / 2; j += 2) {
      const __m512bh k0 = (__m512bh)_mm512_loadu_si512(kp + j * 32);
      const __m512bh k1 = (__m512bh)_mm512_loadu_si512(kp + (j + 1) * 32);
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) {
        a0[g] = _mm512_dpbf16_ps(a0[g], k0, (__m512bh)_mm512_set1_epi32(static_cast<int>(qp[g * D / 2 + j])));
        a1[g] = _mm512_dpbf16_ps(a1[g], k1, (__m512bh)_mm512_set1_epi32(static_cast<int>(qp[g * D / 2 + j + 1])));
      }
    }
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g)
      _mm512_storeu_ps(sc + g * n + off + (t - t0), _mm512_mul_ps(_mm512_add_ps(a0[g], a1[g]), _mm512_set1_ps(scale)));
#else
    v16f a0[G] = {}, a1[G] = {};
    for (int j = 0; j < D / 2; j += 2) {
      v16f e0, o0, e1, o1;
      widen_pairs(kp + j * 32, e0, o0);
      widen_pairs(kp + (j + 1) * 32, e1, o1);
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) {
        const float* qg = q + g * D + 2 * j;
        a0[g] += qg[0] * e0 + qg[1] * o0;
        a1[g] += qg[2] * e1 + qg[3] * o1;
      }
    }
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      const v16f a = (a0[g] + a1[g]) * scale;
      std::memcpy(sc + g * n + off + (t - t0), &a, sizeof(v16f));
    }
#endif
  }
}

// acc[g] += sum over t in [t0, t1) of p[g * n + off + t - t0] * values[t], skipping slots with ok[t] == 0 (ok
// may be null). fp32 values: rows of D.
template <int D, int G>
inline void mix(v16f (*acc)[D / 16], const float* values, int t0, int t1, const uint8_t* ok, const float* p,
                long n, long off, Ahead* = nullptr) {
  constexpr int NV = D / 16;
  for (int t = t0; t < t1; ++t) {
    if (ok != nullptr && !ok[t]) continue;
    v16f v[NV];
    for (int j = 0; j < NV; ++j) v[j] = load16(values + static_cast<long>(t) * D + j * 16);
    for (int g = 0; g < G; ++g) {
      const float w = p[g * n + off + t - t0];
      for (int j = 0; j < NV; ++j) acc[g][j] += w * v[j];
    }
  }
}

// The same for bf16 values stored in slot pairs, two slots per step over [t0, t1) (both even); pairs whose
// weights are all zero are skipped. The weights are bf16 values already (the bf16 model rounds attention
// probabilities to bf16; with AVX512-BF16, attend's softmax leaves them packed in slot pairs over the first half
// of each row of p), and the values of zero-weight slots must be finite (bf16 value caches start zeroed).
template <int D, int G>
inline void mix(v16f (*acc)[D / 16], const uint16_t* values, int t0, int t1, const uint8_t*, const float* p,
                long n, long off, Ahead* ahead = nullptr) {
  constexpr int NV = D / 16;
#if defined(__AVX512BF16__)
  __m512 r[G][NV];  // the accumulators stay in registers for the whole loop
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) r[g][j] = (__m512)acc[g][j];
#endif
  for (int ta = t0; ta < t1; ta += 2) {
    if (ahead != nullptr) ahead->step(2);
    uint32_t w[G];
    uint32_t any = 0;
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
#if defined(__AVX512BF16__)  // attend's softmax stored the weights as bf16 pairs
      w[g] = reinterpret_cast<const uint32_t*>(p + g * n)[(off + ta - t0) / 2];
#else
      const float* pg = p + g * n + off + ta - t0;
      w[g] = bf16_pair(pg[0], pg[1]);
#endif
      any |= w[g];
    }
    if (any == 0) continue;
    const uint16_t* vp = values + static_cast<long>(ta / 2) * D * 2;
#if defined(__AVX512BF16__)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const __m512bh v = (__m512bh)_mm512_loadu_si512(vp + j * 32);
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g)
        r[g][j] = _mm512_dpbf16_ps(r[g][j], v, (__m512bh)_mm512_set1_epi32(static_cast<int>(w[g])));
    }
#else
    const float* p0 = p + off + ta - t0;
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      v16f even, odd;  // slot ta's and slot ta + 1's values of dimensions j * 16 .. j * 16 + 15
      widen_pairs(vp + j * 32, even, odd);
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) acc[g][j] += p0[g * n] * even + p0[g * n + 1] * odd;
    }
#endif
  }
#if defined(__AVX512BF16__)
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < NV; ++j) acc[g][j] = (v16f)r[g][j];
#endif
}

// Attention for every (row, KV head) over a KV cache, for one token per row (a decode step) or for the prompt
// tokens of each row (prefill). Token i (a row of qkv) sits at own-cache slot slots[i] (or `s` for all tokens
// when slots is null) at RoPE position pos[i]; the tokens of row b are [row_start[b], row_start[b + 1]) in slot
// order (token b alone when row_start is null). For each (row, KV head): RoPE on the tokens' keys, written with
// their values into their slots; then for each token RoPE on its G query heads and softmax attention over the
// row's group prefix (slots [pstart[grp], C) of prefix group grp) and the row's valid own slots up to its own.
// Caches in the layouts above (put_k, put_v); Tslots and C are multiples of 16. Keys are scored in whole blocks of
// 16 slots and the scores of slots past the token's or not valid are then masked, so unwritten key slots may hold
// anything. fp32 values of such slots are never read; bf16 values are read in slot pairs, a masked slot with
// weight 0, so writing a slot zeroes its pair partner while that is not valid (no cache needs a fill).
template <typename T, int D, int G>
void attend(const T* qkv, const int64_t* pos, const int32_t* slots, const int64_t* row_start, const int64_t* rowmap, const int32_t* own_start, const T* cos,
            const T* sin, T* ck, T* cv, const uint8_t* valid, const int64_t* group, const T* pk, const T* pv,
            const int32_t* pstart, T* out, int B, int Hkv, int Tslots, int C, int s, float scale) {
  constexpr int NV = D / 16;
  const int H = G * Hkv;
  const long row = static_cast<long>(H + 2 * Hkv) * D;
#pragma omp parallel
  {
    std::vector<float> q(static_cast<size_t>(G) * D * 3 / 2), kr(D);  // G x D queries, then their bf16 pairs
    std::vector<float> sc(static_cast<size_t>(G) * (C + Tslots));
    auto run = [&](long task) {
      const int b = static_cast<int>(task / Hkv), h = static_cast<int>(task % Hkv);
      const long i0 = row_start != nullptr ? row_start[b] : b;
      const long i1 = row_start != nullptr ? row_start[b + 1] : b + 1;
      const long cr = rowmap != nullptr ? rowmap[b] : b;  // the row's place in the cache
      T* kt = ck + (cr * Hkv + h) * D * Tslots;
      T* vh = cv + (cr * Hkv + h) * Tslots * D;
      const uint8_t* ok = valid + cr * Tslots;
      for (long i = i0; i < i1; ++i) {  // the row's new keys and values first: later tokens attend to them
        const T* x = qkv + i * row;
        const int slot = slots != nullptr ? slots[i] : s;
        rope(x + static_cast<long>(H + h) * D, cos + pos[i] * D, sin + pos[i] * D, D, kr.data());
        const T* vnew = x + static_cast<long>(H + Hkv + h) * D;
        const int partner = slot ^ 1;  // bf16 values are read in slot pairs: a pair's unwritten slot must be 0
        const bool clear = sizeof(T) == 2 && partner < Tslots && !ok[partner];
        for (int d = 0; d < D; ++d) {
          put_k(kt, Tslots, D, slot, d, kr[d]);
          put_v(vh, D, slot, d, vnew[d]);
          if (clear) put_v(vh, D, partner, d, T{});
        }
      }
      // the row's own slots before own_start[cr] hold no token (its prompt's left padding): their blocks are skipped
      const int o0 = own_start != nullptr ? own_start[cr] / 16 * 16 : 0;
      Ahead ahead;  // a decode step's next task (the next task of this thread, in the static schedule)
      if (sizeof(T) == 2 && row_start == nullptr && task + 1 < static_cast<long>(B) * Hkv) {
        const long b2 = (task + 1) / Hkv, h2 = (task + 1) % Hkv;
        const long cr2 = rowmap != nullptr ? rowmap[b2] : b2;
        const long a2 = own_start != nullptr ? own_start[cr2] / 16 * 16 : 0, e2 = (s + 16) / 16 * 16;
        const T* k2 = ck + (cr2 * Hkv + h2) * D * Tslots;  // slots [a2, e2) of both layouts: elements [a2 D, e2 D)
        const T* v2 = cv + (cr2 * Hkv + h2) * Tslots * D;
        ahead.p = reinterpret_cast<const char*>(k2 + a2 * D), ahead.end = reinterpret_cast<const char*>(k2 + e2 * D);
        ahead.p2 = reinterpret_cast<const char*>(v2 + a2 * D), ahead.end2 = reinterpret_cast<const char*>(v2 + e2 * D);
      }
      const int grp = C > 0 ? static_cast<int>(group[b]) : 0;
      const int p0 = C > 0 ? pstart[grp] : C;
      const int pb = p0 / 16 * 16;  // first prefix block read
      for (long i = i0; i < i1; ++i) {
        const T* x = qkv + i * row;
        const int slot = slots != nullptr ? slots[i] : s;
        const int own_end = (slot + 16) / 16 * 16;  // slots [o0, slot] in whole blocks
        for (int g = 0; g < G; ++g)
          rope(x + static_cast<long>(h * G + g) * D, cos + pos[i] * D, sin + pos[i] * D, D, q.data() + g * D);
        if (sizeof(T) == 2) {  // bf16: the (bf16-rounded) queries as dimension pairs for the dot products
          uint32_t* qp = reinterpret_cast<uint32_t*>(q.data() + G * D);
#if defined(__AVX512BF16__)
          for (int j = 0; j < G * D; j += 16)  // 16 floats -> 8 pairs, the low half the even dimension
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(qp + j / 2),
                                (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(q.data() + j)));
#else
          for (int j = 0; j < G * D / 2; ++j) qp[j] = bf16_pair(q[2 * j], q[2 * j + 1]);
#endif
        }
        const long n = (C - pb) + (own_end - o0);
        float* sc0 = sc.data();
        if (C > p0) {
          const T* pkt = pk + (static_cast<long>(grp) * Hkv + h) * D * C;
          scores<D, G>(q.data(), pkt, C, pb, C, scale, sc0, n, 0, &ahead);
        }
        scores<D, G>(q.data(), kt, Tslots, o0, own_end, scale, sc0, n, C - pb, &ahead);
        float zs[G];
        for (int g = 0; g < G; ++g) {  // masks, then softmax numerators in place (the token's slot is valid)
          float* r = sc0 + g * n;
          for (int t = pb; t < p0; ++t) r[t - pb] = -INFINITY;
          float* own = r + (C - pb) - o0;  // own[t] for t in [o0, own_end)
#pragma omp simd
          for (int t = o0; t < own_end; ++t) own[t] = (t > slot || !ok[t]) ? -INFINITY : own[t];
#if defined(__AVX512BF16__)
          if constexpr (sizeof(T) == 2) {  // n is a multiple of 16
            __m512 mv = _mm512_set1_ps(-INFINITY);
            for (long j = 0; j < n; j += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(r + j));
            const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
            __m512 z = _mm512_setzero_ps();
            // the numerators rounded to bf16, packed in slot pairs over the row's first n / 2 floats (mix reads
            // them so; each write lands before the floats still to be read)
            uint32_t* pairs = reinterpret_cast<uint32_t*>(r);
            for (long j = 0; j < n; j += 16) {
              const __m512 x = _mm512_loadu_ps(r + j);
              const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ);
              const __m256i e = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_mov_ps(live, exp_neg16(_mm512_sub_ps(x, m))));
              _mm256_storeu_si256(reinterpret_cast<__m256i*>(pairs + j / 2), e);
              z = _mm512_add_ps(z, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(e), 16)));
            }
            zs[g] = _mm512_reduce_add_ps(z);
            continue;
          }
#endif
          float m = -INFINITY;
#pragma omp simd reduction(max : m)
          for (long j = 0; j < n; ++j) m = r[j] > m ? r[j] : m;
          float z = 0.0f;
#pragma omp simd reduction(+ : z)
          for (long j = 0; j < n; ++j) {
            r[j] = r[j] == -INFINITY ? 0.0f : rnd<T>(exp_neg(r[j] - m));
            z += r[j];
          }
          zs[g] = z;
        }
        v16f acc[G][NV] = {};
        // fp32 reads exactly the slots with weight; bf16 reads whole slot pairs (weights of masked slots are 0)
        const int v0 = sizeof(T) == 2 ? pb : p0, v1 = sizeof(T) == 2 ? own_end : slot + 1;
        if (C > p0)
          mix<D, G>(acc, pv + (static_cast<long>(grp) * Hkv + h) * C * D, v0, C, nullptr, sc0, n, v0 - pb, &ahead);
        mix<D, G>(acc, vh, o0, v1, ok, sc0, n, C - pb, &ahead);
        for (int g = 0; g < G; ++g) {
          const float inv = 1.0f / zs[g];
          T* o = out + i * H * D + static_cast<long>(h * G + g) * D;
#if defined(__AVX512BF16__)
          if constexpr (sizeof(T) == 2) {
            for (int j = 0; j < NV; ++j)
              st16(reinterpret_cast<uint16_t*>(o) + j * 16, _mm512_mul_ps((__m512)acc[g][j], _mm512_set1_ps(inv)),
                   0xffff);
            continue;
          }
#endif
          for (int j = 0; j < NV; ++j)
            for (int l = 0; l < 16; ++l) st(o, j * 16 + l, acc[g][j][l] * inv);
        }
      }
    };
    const long tasks = static_cast<long>(B) * Hkv;
    if (row_start == nullptr) {  // a decode step: equal tasks
#pragma omp for schedule(static)
      for (long task = 0; task < tasks; ++task) run(task);
    } else {  // prefill: rows differ in length
#pragma omp for schedule(dynamic, 1)
      for (long task = 0; task < tasks; ++task) run(task);
    }
  }
}

template <typename T, int D>
int attend_d(const T* qkv, const int64_t* pos, const int32_t* slots, const int64_t* row_start, const int64_t* rowmap, const int32_t* own_start, const T* cos, const T* sin, T* ck, T* cv, const uint8_t* valid,
             const int64_t* group, const T* pk, const T* pv, const int32_t* pstart, T* out, int B, int G, int Hkv,
             int Tslots, int C, int s, float scale) {
#define SPIRAL_ATTEND(GG) \
  attend<T, D, GG>(qkv, pos, slots, row_start, rowmap, own_start, cos, sin, ck, cv, valid, group, pk, pv, pstart, out, B, Hkv, Tslots, C, s, scale)
  switch (G) {
    case 1: SPIRAL_ATTEND(1); return 0;
    case 2: SPIRAL_ATTEND(2); return 0;
    case 3: SPIRAL_ATTEND(3); return 0;
    case 4: SPIRAL_ATTEND(4); return 0;
    case 6: SPIRAL_ATTEND(6); return 0;
    case 8: SPIRAL_ATTEND(8); return 0;
    default: return 1;
  }
#undef SPIRAL_ATTEND
}

template <typename T>
int attend_any(const T* qkv, const int64_t* pos, const int32_t* slots, const int64_t* row_start, const int64_t* rowmap, const int32_t* own_start, const T* cos, const T* sin, T* ck, T* cv, const uint8_t* valid,
               const int64_t* group, const T* pk, const T* pv, const int32_t* pstart, T* out, int B, int H,
               int Hkv, int D, int Tslots, int C, int s, float scale) {
  if (H % Hkv != 0 || Tslots % 16 != 0 || C % 16 != 0) return 1;
  const int G = H / Hkv;
  switch (D) {
    case 16: return attend_d<T, 16>(qkv, pos, slots, row_start, rowmap, own_start, cos, sin, ck, cv, valid, group, pk, pv, pstart, out, B, G, Hkv, Tslots, C, s, scale);
    case 32: return attend_d<T, 32>(qkv, pos, slots, row_start, rowmap, own_start, cos, sin, ck, cv, valid, group, pk, pv, pstart, out, B, G, Hkv, Tslots, C, s, scale);
    case 64: return attend_d<T, 64>(qkv, pos, slots, row_start, rowmap, own_start, cos, sin, ck, cv, valid, group, pk, pv, pstart, out, B, G, Hkv, Tslots, C, s, scale);
    case 128: return attend_d<T, 128>(qkv, pos, slots, row_start, rowmap, own_start, cos, sin, ck, cv, valid, group, pk, pv, pstart, out, B, G, Hkv, Tslots, C, s, scale);
    default: return 1;
  }
}


// x += y (when y is given; rounded to T as the residual stream is), then out = w * rms_norm(x) as Hugging
// Face's LlamaRMSNorm computes it: fp32 statistics, the normalised row rounded to T, then scaled by w.
template <typename T>
void add_rms(T* x, const T* y, const T* w, T* out, int B, int Cdim, float eps) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    T* xb = x + static_cast<long>(b) * Cdim;
    T* ob = out + static_cast<long>(b) * Cdim;
#if defined(__AVX512BF16__)
    if constexpr (sizeof(T) == 2) {
      const uint16_t* yb = y != nullptr ? y + static_cast<long>(b) * Cdim : nullptr;
      __m512 ss = _mm512_setzero_ps();
      for (int i = 0; i < Cdim; i += 16) {
        const __mmask16 m = tail_mask(i, Cdim);
        __m512 v = ld16(xb + i, m);
        if (yb != nullptr) {
          v = rnd16(_mm512_add_ps(v, ld16(yb + i, m)));
          st16(xb + i, v, m);
        }
        ss = _mm512_fmadd_ps(v, v, ss);  // masked-off lanes load as 0
      }
      const __m512 inv = _mm512_set1_ps(1.0f / std::sqrt(_mm512_reduce_add_ps(ss) / static_cast<float>(Cdim) + eps));
      for (int i = 0; i < Cdim; i += 16) {
        const __mmask16 m = tail_mask(i, Cdim);
        st16(ob + i, _mm512_mul_ps(ld16(w + i, m), rnd16(_mm512_mul_ps(ld16(xb + i, m), inv))), m);
      }
      continue;
    }
#endif
    if (y != nullptr) {
      const T* yb = y + static_cast<long>(b) * Cdim;
      for (int i = 0; i < Cdim; ++i) st(xb, i, ld(xb, i) + ld(yb, i));
    }
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < Cdim; ++i) ss += ld(xb, i) * ld(xb, i);
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(Cdim) + eps);
    for (int i = 0; i < Cdim; ++i) st(ob, i, ld(w, i) * rnd<T>(ld(xb, i) * inv));
  }
}

// out = silu(gate) * up for gu = [gate | up] (B, 2F); silu rounded to T before the product, as in torch.
template <typename T>
void silu_mul(const T* gu, T* out, int B, int Fdim) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    const T* g = gu + static_cast<long>(b) * 2 * Fdim;
    const T* u = g + Fdim;
    T* o = out + static_cast<long>(b) * Fdim;
#if defined(__AVX512BF16__)
    if constexpr (sizeof(T) == 2) {
      const __m512 one = _mm512_set1_ps(1.0f);
      for (int i = 0; i < Fdim; i += 16) {
        const __mmask16 m = tail_mask(i, Fdim);
        const __m512 v = ld16(g + i, m);
        const __m512 e = exp_neg16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(v)));  // exp(-|v|)
        const __m512 d = _mm512_add_ps(one, e);
        const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ);
        const __m512 sig = _mm512_div_ps(_mm512_mask_blend_ps(pos, e, one), d);  // 1 / (1 + e) or e / (1 + e)
        st16(o + i, _mm512_mul_ps(rnd16(_mm512_mul_ps(v, sig)), ld16(u + i, m)), m);
      }
      continue;
    }
#endif
#pragma omp simd
    for (int i = 0; i < Fdim; ++i) {
      const float v = ld(g, i);
      const float e = v >= 0.0f ? exp_neg(-v) : exp_neg(v);  // exp(-|v|)
      const float sig = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
      st(o, i, rnd<T>(v * sig) * ld(u, i));
    }
  }
}

// One token per row of logits (B, V) from softmax(logits / temperature) by inverse CDF with the uniform u[b] in
// [0, 1): ids[b] and its log-prob logp[b]. Three passes over a row: the max, exp sums per block of 256 ids
// (vectorised), then the crossing block's ids one by one.
template <typename T>
void sample(const T* logits, const double* u, int B, int V, float inv_temp, int64_t* ids, float* logp) {
  constexpr int kBlock = 256;
  const int nblocks = (V + kBlock - 1) / kBlock;
#pragma omp parallel
  {
    std::vector<double> sums(nblocks);
#pragma omp for schedule(static)
    for (int b = 0; b < B; ++b) {
      const T* x = logits + static_cast<long>(b) * V;
      float m = -INFINITY;
#pragma omp simd reduction(max : m)
      for (int i = 0; i < V; ++i) m = ld(x, i) * inv_temp > m ? ld(x, i) * inv_temp : m;
      double z = 0.0;
      for (int k = 0; k < nblocks; ++k) {
        const int end = (k + 1) * kBlock < V ? (k + 1) * kBlock : V;
        float part = 0.0f;
#pragma omp simd reduction(+ : part)
        for (int i = k * kBlock; i < end; ++i) part += exp_neg(ld(x, i) * inv_temp - m);
        sums[k] = part;
        z += part;
      }
      const double thr = u[b] * z;
      double c = 0.0;
      int pick = -1, last = 0;
      for (int k = 0; k < nblocks && pick < 0; ++k) {
        const int end = (k + 1) * kBlock < V ? (k + 1) * kBlock : V;
        if (sums[k] > 0.0) last = k;
        if (c + sums[k] <= thr) {
          c += sums[k];
          continue;
        }
        for (int i = k * kBlock; i < end; ++i) {
          c += exp_neg(ld(x, i) * inv_temp - m);
          if (c > thr) {
            pick = i;
            break;
          }
        }
      }
      if (pick < 0) {  // rounding left the threshold past the total: the last id with mass
        const int end = (last + 1) * kBlock < V ? (last + 1) * kBlock : V;
        for (int i = last * kBlock; i < end; ++i)
          if (exp_neg(ld(x, i) * inv_temp - m) > 0.0f) pick = i;
        if (pick < 0) pick = V - 1;
      }
      ids[b] = pick;
      logp[b] = ld(x, pick) * inv_temp - m - static_cast<float>(std::log(z));
    }
  }
}

// ----- bf16 matmul for the decode step: C (M, N) = A (M, K) W^T, W packed once per weight update -----
//
// Packed layout of W (N, K): blocks of 16 output columns, each (K/2, 16, 2): one 64-byte line holds 16 columns
// times 2 consecutive k, the operand of one `vdpbf16ps` (16 lanes, each the dot product of a k pair). N is
// padded to whole blocks with zero columns; K must be even. A thread takes a contiguous range of panels (NR
// blocks, NR x 16 columns); a panel's weights are read from memory once per call and reused from L2 by every
// MR-row block of A, and while a thread works on one panel it prefetches its next panel into L2, spread over
// the work on the current one. The decode step's weights (269 MB for SmolLM2-135M in bf16) never fit the
// cache, so each step streams them all: without the prefetch the cores wait on that stream (measured here,
// 64 rows, SmolLM2's 30 layers + lm_head: 46 ms without, 44 ms with, oneDNN's prepacked matmuls 54 ms).
// Accumulation is fp32, the result rounded to bf16 (nearest even) as oneDNN and torch do; only the order of
// the sums differs from theirs (results differ from F.linear's by at most one bf16 rounding step).
#if defined(__AVX512BF16__)
constexpr int kGemmRowChunk = 128;  // rows of A per pass over the weights (A's chunk stays in L2)

template <int MR, int NR>
SPIRAL_INLINE void gemm_tile(const uint16_t* a, long lda, const uint16_t* b, long bstride, int KP, uint16_t* c,
                             long ldc, __mmask16 last_mask, const char*& pf, long pfstep, const char* pf_end) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const int32_t* a32 = reinterpret_cast<const int32_t*>(a);  // k pairs of A
  const long lda32 = lda / 2;
  for (int kp = 0; kp < KP; ++kp) {
    __m512bh bv[NR];
    for (int j = 0; j < NR; ++j) bv[j] = (__m512bh)_mm512_loadu_si512(b + j * bstride + kp * 32L);
    if (pf < pf_end) {
      _mm_prefetch(pf, _MM_HINT_T1);
      pf += pfstep;
    }
    for (int i = 0; i < MR; ++i) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(a32[i * lda32 + kp]);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      const __m256i r = (__m256i)_mm512_cvtneps_pbh(acc[i][j]);
      _mm256_mask_storeu_epi16(c + i * ldc + j * 16, j + 1 == NR ? last_mask : __mmask16(0xffff), r);
    }
}

template <int MR, int NR>
inline void gemm_rows(int mr, const uint16_t* a, long lda, const uint16_t* b, long bstride, int KP, uint16_t* c,
                      long ldc, __mmask16 last_mask, const char*& pf, long pfstep, const char* pf_end) {
  if constexpr (MR > 1) {
    if (mr < MR) return gemm_rows<MR - 1, NR>(mr, a, lda, b, bstride, KP, c, ldc, last_mask, pf, pfstep, pf_end);
  }
  gemm_tile<MR, NR>(a, lda, b, bstride, KP, c, ldc, last_mask, pf, pfstep, pf_end);
}

// Panels of NR blocks (the last panel of W may hold fewer), MR rows at a time, 128 rows of A per pass.
template <int MR, int NR>
void gemm_bf16(const uint16_t* a, const uint16_t* w, uint16_t* c, int M, int N, int K) {
  const int KP = K / 2, blocks = (N + 15) / 16;
  const long bstride = static_cast<long>(KP) * 32;  // elements per block of 16 columns
  const int panels = (blocks + NR - 1) / NR;
  const __mmask16 tail = N % 16 ? __mmask16((1u << (N % 16)) - 1) : __mmask16(0xffff);
#pragma omp parallel
  {
    const int T = omp_get_num_threads(), t = omp_get_thread_num();
    const int p0 = static_cast<long>(panels) * t / T, p1 = static_cast<long>(panels) * (t + 1) / T;
    for (int m0 = 0; m0 < M; m0 += kGemmRowChunk) {
      const int rows = M - m0 < kGemmRowChunk ? M - m0 : kGemmRowChunk;
      const long iters = static_cast<long>((rows + MR - 1) / MR) * KP;  // k steps over one panel
      for (int pn = p0; pn < p1; ++pn) {
        const int b0 = pn * NR, nb = blocks - b0 < NR ? blocks - b0 : NR;
        const uint16_t* wp = w + b0 * bstride;
        // the next panel of this thread's range, one line per k step or more
        const char* pf = reinterpret_cast<const char*>(wp + nb * bstride);
        const int next_end = b0 + nb + NR < blocks ? b0 + nb + NR : blocks;
        const char* pf_end = pn + 1 < p1 ? reinterpret_cast<const char*>(w + next_end * bstride) : pf;
        const long pfstep = (pf_end - pf + iters - 1) / iters;
        const __mmask16 last = b0 + nb == blocks ? tail : __mmask16(0xffff);
        for (int r = 0; r < rows; r += MR) {
          const int mr = rows - r < MR ? rows - r : MR;
          const uint16_t* ar = a + static_cast<long>(m0 + r) * K;
          uint16_t* cr = c + static_cast<long>(m0 + r) * N + b0 * 16;
          if (nb == NR)
            gemm_rows<MR, NR>(mr, ar, K, wp, bstride, KP, cr, N, last, pf, pfstep, pf_end);
          else if (nb == 2)
            gemm_rows<MR, 2>(mr, ar, K, wp, bstride, KP, cr, N, last, pf, pfstep, pf_end);
          else
            gemm_rows<MR, 1>(mr, ar, K, wp, bstride, KP, cr, N, last, pf, pfstep, pf_end);
        }
      }
    }
  }
}
#endif

// W (N, K) into the packed layout above (N padded to whole blocks of 16 with zero columns; K even).
void pack_bf16(const uint16_t* w, uint16_t* p, int N, int K) {
  const int KP = K / 2, blocks = (N + 15) / 16;
#pragma omp parallel for schedule(static)
  for (int nb = 0; nb < blocks; ++nb)
    for (int kp = 0; kp < KP; ++kp)
      for (int j = 0; j < 16; ++j) {
        const int n = nb * 16 + j;
        uint16_t* o = p + (static_cast<long>(nb) * KP + kp) * 32 + j * 2;
        o[0] = n < N ? w[static_cast<long>(n) * K + 2 * kp] : 0;
        o[1] = n < N ? w[static_cast<long>(n) * K + 2 * kp + 1] : 0;
      }
}

}  // namespace

extern "C" {

// dtype: 0 = fp32, 1 = bf16 (all tensors of one call share it; ids, positions and groups are int64).
int spiral_attend(int dtype, const void* qkv, const int64_t* pos, const int32_t* slots, const int64_t* row_start,
                  const int64_t* rowmap, const int32_t* own_start,
                  const void* cos, const void* sin, void* ck,
                   void* cv, const uint8_t* valid, const int64_t* group, const void* pk, const void* pv,
                   const int32_t* pstart, void* out, int B, int H, int Hkv, int D, int Tslots, int C, int s,
                   float scale) {
  if (dtype == 1)
    return attend_any(static_cast<const uint16_t*>(qkv), pos, slots, row_start, rowmap, own_start, static_cast<const uint16_t*>(cos),
           static_cast<const uint16_t*>(sin), static_cast<uint16_t*>(ck), static_cast<uint16_t*>(cv), valid,
           group, static_cast<const uint16_t*>(pk), static_cast<const uint16_t*>(pv), pstart,
           static_cast<uint16_t*>(out), B, H, Hkv, D, Tslots, C, s, scale);
  return attend_any(static_cast<const float*>(qkv), pos, slots, row_start, rowmap, own_start, static_cast<const float*>(cos), static_cast<const float*>(sin),
           static_cast<float*>(ck), static_cast<float*>(cv), valid, group, static_cast<const float*>(pk),
           static_cast<const float*>(pv), pstart, static_cast<float*>(out), B, H, Hkv, D, Tslots, C, s, scale);
}

void spiral_add_rms(int dtype, void* x, const void* y, const void* w, void* out, int B, int Cdim, float eps) {
  if (dtype == 1)
    add_rms(static_cast<uint16_t*>(x), static_cast<const uint16_t*>(y), static_cast<const uint16_t*>(w),
            static_cast<uint16_t*>(out), B, Cdim, eps);
  else
    add_rms(static_cast<float*>(x), static_cast<const float*>(y), static_cast<const float*>(w),
            static_cast<float*>(out), B, Cdim, eps);
}

void spiral_silu_mul(int dtype, const void* gu, void* out, int B, int Fdim) {
  if (dtype == 1)
    silu_mul(static_cast<const uint16_t*>(gu), static_cast<uint16_t*>(out), B, Fdim);
  else
    silu_mul(static_cast<const float*>(gu), static_cast<float*>(out), B, Fdim);
}

void spiral_sample(int dtype, const void* logits, const double* u, int B, int V, float inv_temp, int64_t* ids,
                   float* logp) {
  if (dtype == 1)
    sample(static_cast<const uint16_t*>(logits), u, B, V, inv_temp, ids, logp);
  else
    sample(static_cast<const float*>(logits), u, B, V, inv_temp, ids, logp);
}

// The packed bf16 matmul (gemm_bf16): 1 where this build has it (AVX512-BF16), else 0 (the engine keeps
// oneDNN's matmuls).
int spiral_has_gemm() {
#if defined(__AVX512BF16__)
  return 1;
#else
  return 0;
#endif
}

void spiral_pack_bf16(const void* w, void* p, int N, int K) {
  pack_bf16(static_cast<const uint16_t*>(w), static_cast<uint16_t*>(p), N, K);
}

// c (M, N) = a (M, K) w^T for w packed by spiral_pack_bf16; 0 on success, 1 where unsupported (odd K, or a
// build without AVX512-BF16).
int spiral_gemm_bf16(const void* a, const void* w, void* c, int M, int N, int K) {
#if defined(__AVX512BF16__)
  if (K % 2) return 1;
  const auto* a16 = static_cast<const uint16_t*>(a);
  const auto* w16 = static_cast<const uint16_t*>(w);
  auto* c16 = static_cast<uint16_t*>(c);
  if (M <= 16)  // few rows: bandwidth bound; narrow panels spread the weight stream over more prefetches
    gemm_bf16<16, 1>(a16, w16, c16, M, N, K);
  else
    gemm_bf16<8, 3>(a16, w16, c16, M, N, K);
  return 0;
#else
  (void)a, (void)w, (void)c, (void)M, (void)N, (void)K;
  return 1;
#endif
}

int spiral_abi_version() { return 10; }

}  // extern "C"
