/* paging: a weight that kernels modify in place keeps every modification through
 * eviction and page-in, and while evicted it reads back (cuMemcpyDtoH) and takes
 * memsets, partial host-to-device and device-to-device copies correctly.
 *
 * W [1024 x 1024] floats (4 MiB) is loaded, used by a gemv, then changed in place on
 * the device (axpy with a 4 MiB delta D, as a LoRA patch would, and a fill through an
 * interior pointer). Kernels on two other 4 MiB buffers (F1 += F2, F3 += 2 F2) then
 * need 8 MiB at once, which under BLOCKSWAP_VRAM_LIMIT=12M forces W and D out. W is read
 * back while evicted and compared with a host computation of what it must hold
 * (fmaf as the device computes it), changed while evicted, paged in by a gemv,
 * changed again by tanh in place, evicted again and read back again. Every device
 * result is printed (compared with the plain run) and every read-back is checked.
 * Under the shim, the paging API confirms that W really was evicted (when the
 * limit is below 16 MiB) and written back.
 *
 * usage: inplace */
#include "paging.h"

#include <errno.h>

#define ROWS 1024u
#define COLS 1024u
#define N ((size_t)ROWS * COLS)
#define BYTES (N * 4)

static struct pg_kernels K;
static float *want, *got;
static CUdeviceptr W;

static void compare_W(const char *when)
{
    CHECK_CU(cuMemcpyDtoH(got, W, BYTES));
    if (memcmp(want, got, BYTES) != 0) {
        size_t i = 0;
        while (memcmp(&want[i], &got[i], 4) == 0)
            i++;
        fprintf(stderr, "W differs %s at element %zu: %a != expected %a\n", when, i, got[i], want[i]);
        exit(1);
    }
    printf("W %s: fnv 0x%016llx\n", when, (unsigned long long)pg_fnv(got, BYTES));
}

static void set_floats(float *dst, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = v;
}

int main(void)
{
    pg_init(&K);
    CUstream copy;
    CHECK_CU(cuStreamCreate(&copy, CU_STREAM_NON_BLOCKING));
    want = malloc(BYTES);
    got = malloc(BYTES);
    float *Dh = malloc(BYTES), *F1h = malloc(BYTES), *F2h = malloc(BYTES);
    float *pinned;
    CHECK(want && got && Dh && F1h && F2h);
    CHECK_CU(cuMemAllocHost((void **)&pinned, BYTES));

    CUdeviceptr D, F1, F2, F3, x, y, out;
    size_t pitch;
    CHECK_CU(cuMemAlloc(&W, BYTES));
    CHECK_CU(cuMemAllocAsync(&D, BYTES, copy));
    CHECK_CU(cuMemAlloc(&F1, BYTES));
    CHECK_CU(cuMemAlloc(&F2, BYTES));
    CHECK_CU(cuMemAllocPitch(&F3, &pitch, COLS * 4, ROWS, 4));
    CHECK_EQ_U64(pitch, COLS * 4);
    CHECK_CU(cuMemAlloc(&x, COLS * 4));
    CHECK_CU(cuMemAlloc(&y, ROWS * 4));
    CHECK_CU(cuMemAlloc(&out, 16 * 8));

    /* Load: W synchronously from pageable memory, D from pinned on a copy stream,
     * F1..F3 by memsets, x synchronously. Everything else runs on the legacy stream. */
    pg_fill_floats(want, N, 1, 1.0f / 32);
    CHECK_CU(cuMemcpyHtoD(W, want, BYTES));
    pg_fill_floats(pinned, N, 2, 1.0f / 64);
    memcpy(Dh, pinned, BYTES);
    CHECK_CU(cuMemcpyHtoDAsync(D, pinned, BYTES, copy));
    CUevent d_ready;
    CHECK_CU(cuEventCreate(&d_ready, CU_EVENT_DISABLE_TIMING));
    CHECK_CU(cuEventRecord(d_ready, copy));
    CHECK_CU(cuStreamWaitEvent(NULL, d_ready, 0));
    CHECK_CU(cuMemsetD32(F1, 0x3f800000u, N)); /* 1.0f */
    CHECK_CU(cuMemsetD32Async(F2, 0x3e000000u, N, NULL)); /* 0.125f */
    CHECK_CU(cuMemsetD8(F3, 0x3c, BYTES)); /* 0x3c3c3c3c = 0.0115 */
    set_floats(F1h, N, 1.0f);
    set_floats(F2h, N, 0.125f);
    float xh[COLS];
    pg_fill_floats(xh, COLS, 3, 1.0f);
    CHECK_CU(cuMemcpyHtoD(x, xh, sizeof(xh)));

    int api = pg_want_api();
    uint64_t lim = pg_env_size("BLOCKSWAP_VRAM_LIMIT");
    int forced = api && lim && lim < 16 * MiB;
    int slot = 0;

    /* step 1: uses W as loaded */
    CHECK_CU(pg_gemv(&K, NULL, PG_PARAMS, y, W, x, ROWS, COLS));
    CHECK_CU(pg_checksum(&K, NULL, out + 8 * slot++, y, ROWS * 4));

    /* in place: W += 0.5 D (whole), then a fill through an interior pointer */
    CHECK_CU(pg_axpy(&K, NULL, W, D, 0.5f, N));
    for (size_t i = 0; i < N; i++)
        want[i] = fmaf(0.5f, Dh[i], want[i]);
    size_t fill_at = (1 * MiB) / 4, fill_n = 1000;
    CHECK_CU(pg_fill(&K, NULL, W + fill_at * 4, 0x3f000000u, fill_n)); /* 0.5f */
    set_floats(want + fill_at, fill_n, 0.5f);

    /* step 2: uses the modified W */
    CHECK_CU(pg_gemv(&K, NULL, PG_STRUCT, y, W, x, ROWS, COLS));
    CHECK_CU(pg_checksum(&K, NULL, out + 8 * slot++, y, ROWS * 4));

    /* Other work needs 8 MiB at once: under a 12M limit W and D must go. */
    CHECK_CU(pg_axpy(&K, NULL, F1, F2, 1.0f, N));
    CHECK_CU(pg_axpy(&K, NULL, F3, F2, 2.0f, N));
    for (size_t i = 0; i < N; i++)
        F1h[i] = fmaf(1.0f, F2h[i], F1h[i]);
    CHECK_CU(cuCtxSynchronize());
    struct blockswap_stats st;
    if (forced) {
        CHECK_EQ_U64(pg_is_resident(W), 0);
        CHECK_EQ_U64(pg_is_resident(W + BYTES - 4), 0);
        CHECK_EQ_U64(pg_is_resident(D), 0);
        pg_stats(&st);
        pg_print_stats("after first eviction", &st);
        CHECK(st.evictions >= 2);
        CHECK(st.writeback_bytes >= BYTES); /* W changed on the device: it was copied back */
    }

    /* Read back while evicted (from the host backing): the in-place changes are there. */
    compare_W("evicted after axpy+fill");
    if (forced)
        CHECK_EQ_U64(pg_is_resident(W), 0); /* a read-back does not page in */

    /* Change W while evicted: a memset, a partial host copy, a device-to-device copy. */
    size_t ms_at = (2 * MiB) / 4, ms_n = 4096;
    CHECK_CU(cuMemsetD32(W + ms_at * 4, 0x3e800000u, ms_n)); /* 0.25f */
    set_floats(want + ms_at, ms_n, 0.25f);
    size_t h_at = (3 * MiB) / 4 + 7, h_n = 16384;
    float *part = malloc(h_n * 4);
    CHECK(part);
    pg_fill_floats(part, h_n, 4, 0.75f);
    CHECK_CU(cuMemcpyHtoD(W + h_at * 4, part, h_n * 4));
    memcpy(want + h_at, part, h_n * 4);
    size_t dd_at = (512 * 1024) / 4 + 3, dd_src = 100, dd_n = 2048;
    CHECK_CU(cuMemcpyDtoD(W + dd_at * 4, F1 + dd_src * 4, dd_n * 4));
    memcpy(want + dd_at, F1h + dd_src, dd_n * 4);
    CHECK_CU(cuCtxSynchronize());
    compare_W("evicted after memset+copies");

    /* step 3: page W in with everything above */
    CHECK_CU(pg_gemv(&K, NULL, PG_EXTRA, y, W, x, ROWS, COLS));
    CHECK_CU(pg_checksum(&K, NULL, out + 8 * slot++, y, ROWS * 4));
    CHECK_CU(pg_checksum(&K, NULL, out + 8 * slot++, W, BYTES));
    CHECK_CU(cuCtxSynchronize());
    if (forced)
        CHECK_EQ_U64(pg_is_resident(W), 1);
    compare_W("resident again");

    /* Change it in place once more, evict it again, read it back, use it. */
    CHECK_CU(pg_tanh(&K, NULL, W, N));
    for (size_t i = 0; i < N; i++)
        want[i] = tanhf(want[i]);
    uint64_t wb_before = 0;
    if (forced) {
        pg_stats(&st);
        wb_before = st.writeback_bytes;
    }
    CHECK_CU(pg_axpy(&K, NULL, F1, F2, 1.0f, N));
    CHECK_CU(pg_axpy(&K, NULL, F3, F1, 0.5f, N));
    for (size_t i = 0; i < N; i++)
        F1h[i] = fmaf(1.0f, F2h[i], F1h[i]);
    CHECK_CU(cuCtxSynchronize());
    if (forced) {
        CHECK_EQ_U64(pg_is_resident(W), 0);
        pg_stats(&st);
        pg_print_stats("after second eviction", &st);
        CHECK(st.writeback_bytes >= wb_before + BYTES);
    }
    compare_W("evicted after tanh");
    CHECK_CU(pg_gemv(&K, NULL, PG_PARAMS, y, W, x, ROWS, COLS));
    CHECK_CU(pg_checksum(&K, NULL, out + 8 * slot++, y, ROWS * 4));
    CHECK_CU(pg_checksum(&K, NULL, out + 8 * slot++, F3, BYTES));

    /* F1 went through the same: check it too. */
    CHECK_CU(cuMemcpyDtoH(got, F1, BYTES));
    CHECK(memcmp(got, F1h, BYTES) == 0);

    uint64_t sums[16];
    CHECK_CU(cuMemcpyDtoH(sums, out, 8 * (size_t)slot));
    for (int i = 0; i < slot; i++)
        printf("result %d: 0x%016llx\n", i, (unsigned long long)sums[i]);

    CHECK_CU(cuCtxSynchronize());
    CUdeviceptr all[] = { W, D, F1, F2, F3, x, y, out };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        CHECK_CU(cuMemFree(all[i]));
    CHECK_CU(cuMemFreeHost(pinned));
    return 0;
}
