/* gpu: tests/paging/random.c made comparable bit for bit between the simulated driver
 * and a GPU. Built twice (against the simulator and against the real driver); for the
 * same seed both must print the same lines. Two changes, both outside random.c:
 * - bs_tanh_f32 is the one built-in whose result may differ in the last bits between
 *   glibc and CUDA (docs/simulator.md): here it is a fill of 0.5f over the same range,
 *   so the shim still sees a kernel on the same pointer;
 * - memset values are made finite floats (sign clear, exponent below 0x80), so that no
 *   NaN arises from them: a CPU and a GPU may write different NaN bit patterns.
 * The random raw byte patterns random.c writes now and then may still hold NaNs;
 * tests/gpu/run-random-gpu.py says so when a seed differs. */
#include "../paging/paging.h"

static inline unsigned char exact_byte(unsigned char v) { return v & 0x3f; }
static inline unsigned int exact_word(unsigned int v) { return v & 0x3fffffffu; }

#define pg_tanh(K, s, y, n) pg_fill((K), (s), (y), 0x3f000000u, (n))
#undef cuMemsetD8
#define cuMemsetD8(p, v, n) cuMemsetD8_v2((p), exact_byte(v), (n))
#undef cuMemsetD8Async
#define cuMemsetD8Async(p, v, n, s) (cuMemsetD8Async)((p), exact_byte(v), (n), (s))
#undef cuMemsetD32Async
#define cuMemsetD32Async(p, v, n, s) (cuMemsetD32Async)((p), exact_word(v), (n), (s))
#undef cuMemsetD2D32Async
#define cuMemsetD2D32Async(p, pitch, v, w, h, s) \
    (cuMemsetD2D32Async)((p), (pitch), exact_word(v), (w), (h), (s))

#include "../paging/random.c"
