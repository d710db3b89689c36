/* The product's one kernel: libblockswap.so loads this file's PTX
 * (bs_fingerprint_ptx.h, included by src/page/fingerprint.c) into the application's
 * context to tell whether a paged weight changed on the GPU (write-back elision). The
 * test kernels (tests/kernels/bs_kernels.cu) #include this file, so the tests' module
 * carries the same code, written once; the simulated driver's C twin is in
 * src/sim/kernels.c. Regenerate the header with scripts/gen-kernels-ptx. */
#include <stdint.h>

/* Fingerprint of a buffer, for telling whether a kernel changed it. The data is read as
 * n = ceil(bytes / 8) little-endian 64-bit words w_i, the last zero-padded; each word
 * is mixed with its index by the splitmix64 finalizer, and the mixes are summed mod
 * 2^64, so the order of summation does not matter:
 *   h_i  = fmix(w_i ^ (i * 0x9E3779B97F4A7C15))
 *   fmix(z): z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *            z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)
 *   *out = sum_i h_i + bytes   (bytes added so that trailing zero bytes count)
 * *out is overwritten; its prior content does not matter. */
static __device__ __forceinline__ uint64_t fp_mix(uint64_t w, uint64_t i)
{
    uint64_t z = w ^ (i * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* One block does all the work (a single launch cannot otherwise combine the blocks'
 * sums without scratch memory or a grid-wide barrier): blocks other than (0,0,0)
 * return at once. Launch it as grid 1 x 1 x 1, block 1024 x 1 x 1 (any block shape
 * of up to 1024 threads gives the same result). The threads stride through the buffer
 * with 16-byte loads, four in flight each, then add their partial sums in shared
 * memory; thread 0 writes *out. data may have any alignment. */
extern "C" __global__ void bs_fingerprint_u64(uint64_t *out, const uint8_t *data, uint64_t bytes)
{
    __shared__ uint64_t part[1024];
    if (blockIdx.x != 0 || blockIdx.y != 0 || blockIdx.z != 0)
        return;
    const unsigned nt = blockDim.x * blockDim.y * blockDim.z;
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const uint64_t full = bytes / 8; /* whole words */
    uint64_t sum = 0, i = t;
    if (((uintptr_t)data & 15) == 0) {
        /* Pairs of words; pair p holds words 2p and 2p+1. */
        const ulonglong2 *v = (const ulonglong2 *)data;
        const uint64_t pairs = full / 2, step = nt;
        uint64_t p = t;
        for (; p + 3 * step < pairs; p += 4 * step) {
            ulonglong2 a = __ldcs(v + p), b = __ldcs(v + p + step);
            ulonglong2 c = __ldcs(v + p + 2 * step), d = __ldcs(v + p + 3 * step);
            sum += fp_mix(a.x, 2 * p) + fp_mix(a.y, 2 * p + 1);
            sum += fp_mix(b.x, 2 * (p + step)) + fp_mix(b.y, 2 * (p + step) + 1);
            sum += fp_mix(c.x, 2 * (p + 2 * step)) + fp_mix(c.y, 2 * (p + 2 * step) + 1);
            sum += fp_mix(d.x, 2 * (p + 3 * step)) + fp_mix(d.y, 2 * (p + 3 * step) + 1);
        }
        for (; p < pairs; p += step) {
            ulonglong2 a = __ldcs(v + p);
            sum += fp_mix(a.x, 2 * p) + fp_mix(a.y, 2 * p + 1);
        }
        i = 2 * pairs + t; /* the odd last whole word, if any */
    }
    if (((uintptr_t)data & 7) == 0) {
        const uint64_t *w = (const uint64_t *)data;
        for (; i < full; i += nt)
            sum += fp_mix(__ldcs(w + i), i);
    } else {
        for (; i < full; i += nt) {
            uint64_t w = 0;
            for (int b = 7; b >= 0; b--)
                w = (w << 8) | data[8 * i + b];
            sum += fp_mix(w, i);
        }
    }
    if (t == 0 && (bytes & 7)) {
        uint64_t w = 0;
        for (uint64_t b = bytes; b-- > 8 * full;)
            w = (w << 8) | data[b];
        sum += fp_mix(w, full);
    }
    /* Addition mod 2^64 is associative and commutative: any tree gives the same sum. */
    part[t] = sum;
    __syncthreads();
    for (unsigned s = 512; s > 0; s >>= 1) {
        if (t < s && t + s < nt)
            part[t] += part[t + s];
        __syncthreads();
    }
    if (t == 0)
        *out = part[0] + bytes;
}
