/* bs_fingerprint_u64 matches a host computation of its definition for sizes around
 * word boundaries and a large odd size, at aligned and unaligned addresses; any one
 * changed byte and any trailing zero byte changes it; it overwrites *out; it lasts
 * bytes / CUDASIM_HBM_GBPS; it reports its parameter layout; an unmapped range is an
 * illegal address. Launched with kernelParams (argv[1] = "params") or with the
 * packed `extra` buffer (argv[1] = "extra"). */
#include "simtest.h"

static int use_extra;

static CUresult fingerprint(CUstream s, CUdeviceptr out, CUdeviceptr data, uint64_t bytes)
{
    CUfunction f = st_kernel("bs_fingerprint_u64");
    if (!use_extra) {
        /* The launch shape a GPU caller must use: one block of 1024 threads. */
        void *params[] = {&out, &data, &bytes};
        return cuLaunchKernel(f, 1, 1, 1, 1024, 1, 1, 0, s, params, NULL);
    }
    struct { CUdeviceptr out, data; uint64_t bytes; } buf = {out, data, bytes};
    size_t size = sizeof(buf);
    void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &buf, CU_LAUNCH_PARAM_BUFFER_SIZE, &size, CU_LAUNCH_PARAM_END};
    return cuLaunchKernel(f, 1, 1, 1, 256, 1, 1, 0, s, NULL, extra);
}

/* The definition, written independently of the simulator: pad to whole words with
 * zeros, read each word byte by byte, little-endian. */
static uint64_t fmix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t host_fingerprint(const uint8_t *p, uint64_t bytes)
{
    uint64_t n = (bytes + 7) / 8, sum = bytes;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t w = 0;
        for (unsigned b = 0; b < 8; b++)
            if (8 * i + b < bytes)
                w |= (uint64_t)p[8 * i + b] << (8 * b);
        sum += fmix(w ^ (i * 0x9E3779B97F4A7C15ull));
    }
    return sum;
}

static uint64_t device_fingerprint(CUstream s, CUdeviceptr out, CUdeviceptr data, uint64_t bytes)
{
    uint64_t junk = 0x0123456789abcdefull, got;
    CHECK_CU(cuMemcpyHtoD(out, &junk, 8)); /* overwritten, not added to */
    CHECK_CU(fingerprint(s, out, data, bytes));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(&got, out, 8));
    return got;
}

int main(int argc, char **argv)
{
    use_extra = argc > 1 && strcmp(argv[1], "extra") == 0;
    st_setup();
    CUstream s;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));

    /* cuFuncGetParamInfo: (8, 8, 8) at 0, 8, 16 */
    CUfunction f = st_kernel("bs_fingerprint_u64");
    for (size_t i = 0; i < 3; i++) {
        size_t off, size;
        CHECK_CU(cuFuncGetParamInfo(f, i, &off, &size));
        CHECK_EQ_U64(off, 8 * i);
        CHECK_EQ_U64(size, 8);
    }
    CHECK(cuFuncGetParamInfo(f, 3, NULL, NULL) == CUDA_ERROR_INVALID_VALUE);

    enum { BIG = 3 * 1024 * 1024 + 5, PAD = 16 };
    uint8_t *h = malloc(BIG + PAD);
    CHECK(h != NULL);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < BIG + PAD; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        h[i] = (uint8_t)(x >> 32);
    }
    CUdeviceptr d = st_alloc(BIG + PAD), out = st_alloc(8);
    CHECK_CU(cuMemcpyHtoD(d, h, BIG + PAD));

    /* Known answers, computed outside C (Python) from the definition. */
    CHECK_CU(cuMemcpyHtoD(d, "hello, blockswap", 16));
    CHECK_EQ_U64(device_fingerprint(s, out, d, 0), 0);
    CHECK_EQ_U64(device_fingerprint(s, out, d, 5), 0x97dde803c6f6d22aull);   /* "hello" */
    CHECK_EQ_U64(device_fingerprint(s, out, d, 16), 0x2db2d4b74a12fafeull);  /* "hello, blockswap" */
    uint8_t ramp[4096];
    for (int i = 0; i < 4096; i++)
        ramp[i] = (uint8_t)i;
    CHECK_CU(cuMemcpyHtoD(d, ramp, sizeof(ramp)));
    CHECK_EQ_U64(device_fingerprint(s, out, d, 4096), 0xcb6d7ae1aeff3251ull);
    CHECK_EQ_U64(host_fingerprint(ramp, 4096), 0xcb6d7ae1aeff3251ull);
    CHECK_CU(cuMemcpyHtoD(d, h, BIG + PAD));

    /* Sizes around word boundaries and one large odd size, at an aligned address and
     * at odd offsets (the CUDA version has separate paths for those). */
    const uint64_t sizes[] = {0, 1, 7, 8, 9, 15, 16, 17, 4096, BIG};
    const unsigned offs[] = {0, 3, 8};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
        for (size_t o = 0; o < 3; o++)
            CHECK_EQ_U64(device_fingerprint(s, out, d + offs[o], sizes[k]),
                         host_fingerprint(h + offs[o], sizes[k]));

    /* Every size differs from its neighbour, even when the extra byte is zero. */
    uint8_t zeros[32] = {0};
    CHECK_CU(cuMemcpyHtoD(d, zeros, sizeof(zeros)));
    uint64_t prev = device_fingerprint(s, out, d, 0);
    for (uint64_t n = 1; n <= 32; n++) {
        uint64_t fp = device_fingerprint(s, out, d, n);
        CHECK(fp != prev);
        CHECK_EQ_U64(fp, host_fingerprint(zeros, n));
        prev = fp;
    }
    CHECK_CU(cuMemcpyHtoD(d, h, sizeof(zeros)));

    /* One changed byte (first, middle, last, and in the padded tail word) changes it;
     * restoring the byte restores it. */
    uint64_t base = device_fingerprint(s, out, d, BIG);
    CHECK_EQ_U64(base, host_fingerprint(h, BIG));
    const size_t at[] = {0, 1, 4095, BIG / 2, BIG - 6, BIG - 1};
    for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++)
        for (unsigned bit = 0; bit < 8; bit += 7) {
            uint8_t b = h[at[k]] ^ (uint8_t)(1u << bit);
            CHECK_CU(cuMemcpyHtoD(d + at[k], &b, 1));
            CHECK(device_fingerprint(s, out, d, BIG) != base);
            CHECK_CU(cuMemcpyHtoD(d + at[k], &h[at[k]], 1));
        }
    CHECK_EQ_U64(device_fingerprint(s, out, d, BIG), base);
    /* Bytes past the end do not count. */
    uint8_t b = h[BIG] ^ 0xff;
    CHECK_CU(cuMemcpyHtoD(d + BIG, &b, 1));
    CHECK_EQ_U64(device_fingerprint(s, out, d, BIG), base);
    /* Swapping two words changes it: positions matter, not only the multiset. */
    uint8_t sw[16];
    memcpy(sw, h + 8, 8);
    memcpy(sw + 8, h, 8);
    CHECK(memcmp(sw, h, 16) != 0);
    CHECK_CU(cuMemcpyHtoD(d, sw, 16));
    CHECK(device_fingerprint(s, out, d, BIG) != base);
    CHECK_CU(cuMemcpyHtoD(d, h, 16));

    /* Virtual duration: (bytes read + 8 written) / CUDASIM_HBM_GBPS (3000 GB/s). */
    CUevent e0, e1;
    CHECK_CU(cuEventCreate(&e0, 0));
    CHECK_CU(cuEventCreate(&e1, 0));
    CHECK_CU(cuEventRecord(e0, s));
    CHECK_CU(fingerprint(s, out, d, BIG));
    CHECK_CU(cuEventRecord(e1, s));
    CHECK_CU(cuEventSynchronize(e1));
    float ms;
    CHECK_CU(cuEventElapsedTime(&ms, e0, e1));
    double want_ms = (BIG + 8) / 3000e9 * 1e3;
    CHECK(ms > want_ms * 0.99 && ms < want_ms * 1.01);

    /* Reading a reserved but unmapped range is an illegal address (last: it poisons
     * the context). */
    CUdeviceptr hole;
    CHECK_CU(cuMemAddressReserve(&hole, 2 << 20, 0, 0, 0));
    CHECK(fingerprint(s, out, hole, 4096) == CUDA_ERROR_ILLEGAL_ADDRESS);

    free(h);
    return 0;
}
