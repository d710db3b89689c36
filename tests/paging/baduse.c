/* paging: bad use and exhausted budgets give the driver's answers or a clear
 * CUDA_ERROR_OUT_OF_MEMORY, and the process carries on.
 *
 * baduse frees      double frees (sync, async, pitched) of managed and small
 *                   allocations, frees of unknown, interior and past-the-end
 *                   pointers: prints every CUresult, so run.py --compare checks that
 *                   they equal the plain driver's; managed data survives the bad frees.
 * baduse oom        a gemv on a 40 MiB matrix under a smaller BLOCKSWAP_VRAM_LIMIT:
 *                   loading it works (lazily), the launch returns
 *                   CUDA_ERROR_OUT_OF_MEMORY under the shim (CUDA_SUCCESS without), the
 *                   context stays usable, the matrix is intact, smaller kernels work.
 * baduse unmanaged  small allocations count against the limit: they first evict
 *                   managed memory made resident before, then fail with
 *                   CUDA_ERROR_OUT_OF_MEMORY once only unmanaged memory is left; freeing
 *                   them makes room again.
 * baduse host-limit managed allocations beyond BLOCKSWAP_HOST_LIMIT: whatever call
 *                   fails, every buffer whose calls succeeded holds its data and the
 *                   process goes on (the error line is checked by run.py). What fits
 *                   the VRAM limit is loaded there and needs no host backing.
 * baduse interleaved weights and small allocations in turn: loading leaves room for
 *                   the small ones and evicts nothing.
 *
 * Outcomes that differ with the shim are checked here (from blockswap_enabled() and
 * the limit in the environment) and printed as "as expected", so the output is the
 * same with and without blockswap. */
#include "paging.h"

static struct pg_kernels K;

static void upload(CUdeviceptr p, size_t bytes, uint64_t seed)
{
    float *h = malloc(bytes);
    CHECK(h);
    pg_fill_floats(h, bytes / 4, seed, 0.5f);
    CHECK_CU(cuMemcpyHtoD(p, h, bytes));
    free(h);
}

static uint64_t device_fnv(CUdeviceptr p, size_t bytes)
{
    void *h = malloc(bytes);
    CHECK(h);
    CHECK_CU(cuMemcpyDtoH(h, p, bytes));
    uint64_t r = pg_fnv(h, bytes);
    free(h);
    return r;
}

static int verify(CUdeviceptr p, size_t bytes, uint64_t seed)
{
    float *want = malloc(bytes), *got = malloc(bytes);
    CHECK(want && got);
    pg_fill_floats(want, bytes / 4, seed, 0.5f);
    CHECK_CU(cuMemcpyDtoH(got, p, bytes));
    int ok = memcmp(want, got, bytes) == 0;
    free(want);
    free(got);
    return ok;
}

/* Checksum of bytes at p computed by a kernel on the legacy stream. */
static uint64_t kernel_sum(CUdeviceptr out, CUdeviceptr p, size_t bytes)
{
    uint64_t h;
    CHECK_CU(pg_checksum(&K, NULL, out, p, bytes));
    CHECK_CU(cuMemcpyDtoH(&h, out, 8));
    return h;
}

#define SHOW(call) printf("%-58s -> %d\n", #call, (int)(call))

static int frees(void)
{
    CUstream s;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUdeviceptr m, m2, a, small, pitched, out;
    size_t pitch;
    CHECK_CU(cuMemAlloc(&out, 8));

    /* managed, synchronous: free twice */
    CHECK_CU(cuMemAlloc(&m, 4 * MiB));
    upload(m, 4 * MiB, 1);
    SHOW(cuMemFree(m));
    SHOW(cuMemFree(m));

    /* unknown pointers, and NULL */
    char *host = malloc(4096);
    SHOW(cuMemFree((CUdeviceptr)0x10000));
    SHOW(cuMemFree((CUdeviceptr)host));
    SHOW(cuMemFree(0));
    SHOW(cuMemFreeAsync((CUdeviceptr)0x10000, s));
    free(host);

    /* interior pointers of a live managed allocation (3 MiB: the last one lies in
     * its second, partly used 2 MiB page); the allocation survives them. Pointers
     * past its end are not tried: without the shim another allocation may start
     * there. */
    CHECK_CU(cuMemAlloc(&m2, 3 * MiB));
    upload(m2, 3 * MiB, 2);
    SHOW(cuMemFree(m2 + 4096));
    SHOW(cuMemFree(m2 + 2 * MiB));
    SHOW(cuMemFree(m2 + 3 * MiB - 4096));
    SHOW(cuMemFreeAsync(m2 + 8, s));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK(verify(m2, 3 * MiB, 2));
    printf("managed allocation intact after bad frees: sum 0x%016llx\n",
           (unsigned long long)kernel_sum(out, m2, 3 * MiB));
    CHECK_CU(cuCtxSynchronize());
    SHOW(cuMemFree(m2));

    /* managed, stream-ordered: free twice */
    CHECK_CU(cuMemAllocAsync(&a, 6 * MiB, s));
    CHECK_CU(cuMemsetD32Async(a, 0x3f800000u, 6 * MiB / 4, s));
    SHOW(cuMemFreeAsync(a, s));
    SHOW(cuMemFreeAsync(a, s));
    CHECK_CU(cuStreamSynchronize(s));
    SHOW(cuMemFree(a));

    /* pitched managed, and a small (unmanaged) one: free twice */
    CHECK_CU(cuMemAllocPitch(&pitched, &pitch, 4096, 1024, 4));
    SHOW(cuMemFree(pitched));
    SHOW(cuMemFree(pitched));
    CHECK_CU(cuMemAlloc(&small, 64 * 1024));
    SHOW(cuMemFree(small));
    SHOW(cuMemFree(small));

    /* and everything still works */
    CUdeviceptr w;
    CHECK_CU(cuMemAlloc(&w, 5 * MiB));
    upload(w, 5 * MiB, 3);
    printf("new allocation works: sum 0x%016llx\n", (unsigned long long)kernel_sum(out, w, 5 * MiB));
    CHECK_CU(cuCtxSynchronize());
    CHECK_CU(cuMemFree(w));
    CHECK_CU(cuMemFree(out));
    return 0;
}

static int oom(void)
{
    const uint32_t rows = 10240, cols = 1024; /* 40 MiB */
    size_t bytes = (size_t)rows * cols * 4;
    uint64_t lim = pg_env_size("BLOCKSWAP_VRAM_LIMIT");
    int expect_oom = pg_shim_enabled() && lim && lim < bytes;
    CUdeviceptr big, x, y, out, w;
    CHECK_CU(cuMemAlloc(&big, bytes)); /* lazy: no VRAM needed yet */
    upload(big, bytes, 10);
    CHECK_CU(cuMemAlloc(&x, cols * 4));
    CHECK_CU(cuMemAlloc(&y, rows * 4));
    CHECK_CU(cuMemAlloc(&out, 8));
    upload(x, cols * 4, 11);
    CHECK_CU(cuMemsetD32(y, 0, rows));

    CUresult r = pg_gemv(&K, NULL, PG_PARAMS, y, big, x, rows, cols);
    if (r != (expect_oom ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS)) {
        fprintf(stderr, "gemv on 40 MiB: %d, expected %d\n", (int)r,
                expect_oom ? (int)CUDA_ERROR_OUT_OF_MEMORY : 0);
        return 1;
    }
    printf("gemv on 40 MiB: as expected\n");
    /* the same through the struct form */
    r = pg_gemv(&K, NULL, PG_STRUCT, y, big, x, rows, cols);
    CHECK(r == (expect_oom ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS));
    CHECK_CU(cuCtxSynchronize()); /* the context is fine */

    /* the matrix is intact, and a read-back does not need VRAM */
    CHECK(verify(big, bytes, 10));
    printf("matrix intact: fnv 0x%016llx\n", (unsigned long long)device_fnv(big, bytes));

    /* kernels that fit still work, before and after another failure */
    CHECK_CU(cuMemAlloc(&w, 8 * MiB));
    upload(w, 8 * MiB, 12);
    CHECK_CU(pg_gemv(&K, NULL, PG_EXTRA, y, w, x, 2048, cols));
    printf("gemv on 8 MiB: y sum 0x%016llx\n", (unsigned long long)kernel_sum(out, y, 2048 * 4));
    r = pg_gemv(&K, NULL, PG_PARAMS, y, big, x, rows, cols);
    CHECK(r == (expect_oom ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS));
    CHECK_CU(pg_gemv(&K, NULL, PG_STRUCT, y, w, x, 2048, cols));
    CHECK_CU(pg_tanh(&K, NULL, y, 2048));
    printf("gemv on 8 MiB again: y sum 0x%016llx\n", (unsigned long long)kernel_sum(out, y, 2048 * 4));
    printf("w sum 0x%016llx\n", (unsigned long long)kernel_sum(out, w, 8 * MiB));
    CHECK_CU(cuCtxSynchronize());
    CUdeviceptr all[] = { big, x, y, out, w };
    for (size_t i = 0; i < 5; i++)
        CHECK_CU(cuMemFree(all[i]));
    return 0;
}

static int unmanaged(void)
{
    uint64_t lim = pg_env_size("BLOCKSWAP_VRAM_LIMIT");
    int shim = pg_shim_enabled() && lim;
    CUdeviceptr m[3], out, u[40];
    CHECK_CU(cuMemAlloc(&out, 8));
    for (int i = 0; i < 3; i++) {
        CHECK_CU(cuMemAlloc(&m[i], 4 * MiB));
        upload(m[i], 4 * MiB, 20 + (uint64_t)i);
        printf("managed %d sum 0x%016llx\n", i, (unsigned long long)kernel_sum(out, m[i], 4 * MiB));
    }
    /* Managed memory is (probably) resident now. 1 MiB unmanaged allocations up to
     * the limit must succeed by evicting it; past the limit they must fail. */
    int n = (int)(lim / MiB) + 8, ok = 0, first_fail = -1;
    if (!shim)
        n = 24;
    CHECK(n <= 40);
    for (int i = 0; i < n; i++) {
        CUresult r = cuMemAlloc(&u[i], 1 * MiB);
        if (r == CUDA_SUCCESS) {
            CHECK(first_fail < 0); /* nothing freed in between: no success after a failure */
            ok++;
            CHECK_CU(cuMemsetD8(u[i], (unsigned char)i, 1 * MiB));
        } else {
            CHECK(r == CUDA_ERROR_OUT_OF_MEMORY);
            if (first_fail < 0)
                first_fail = i;
            u[i] = 0;
        }
    }
    if (shim) {
        /* Without eviction at most 4 would fit next to the 12 MiB made resident;
         * half the limit allows for a shim that counts small allocations in 2 MiB
         * units. Never more than the limit. */
        fprintf(stderr, "unmanaged: %d of %d 1 MiB allocations succeeded under %llu MiB\n", ok, n,
                (unsigned long long)(lim / MiB));
        CHECK(ok >= (int)(lim / MiB) / 2 - 1);
        CHECK(ok <= (int)(lim / MiB));
    } else {
        CHECK(ok == n);
    }
    printf("unmanaged allocations: as expected\n");
    CHECK_CU(cuCtxSynchronize());
    for (int i = 0; i < n; i++)
        if (u[i] && i >= 2)
            CHECK_CU(cuMemFree(u[i]));
    /* two unmanaged MiB are left; the managed buffers fit again, one at a time */
    for (int i = 0; i < 3; i++) {
        CHECK(verify(m[i], 4 * MiB, 20 + (uint64_t)i));
        printf("managed %d sum 0x%016llx\n", i, (unsigned long long)kernel_sum(out, m[i], 4 * MiB));
    }
    CUdeviceptr again;
    CHECK_CU(cuMemAlloc(&again, 1 * MiB)); /* a later call that fits works */
    CHECK_CU(cuCtxSynchronize());
    CHECK_CU(cuMemFree(again));
    for (int i = 0; i < 2 && i < n; i++)
        if (u[i])
            CHECK_CU(cuMemFree(u[i]));
    for (int i = 0; i < 3; i++)
        CHECK_CU(cuMemFree(m[i]));
    CHECK_CU(cuMemFree(out));
    return 0;
}

static int host_limit(void)
{
    int shim = pg_shim_enabled() && pg_env_size("BLOCKSWAP_HOST_LIMIT");
    CUdeviceptr m[4], out;
    int good[4], failures = 0;
    CHECK_CU(cuMemAlloc(&out, 8));
    for (int i = 0; i < 4; i++) {
        good[i] = 0;
        m[i] = 0;
        CUresult r = cuMemAlloc(&m[i], 4 * MiB);
        if (r != CUDA_SUCCESS) {
            m[i] = 0;
            fprintf(stderr, "host-limit: cuMemAlloc %d: %d\n", i, (int)r);
            failures++;
            continue;
        }
        float *h = malloc(4 * MiB);
        CHECK(h);
        pg_fill_floats(h, MiB, 30 + (uint64_t)i, 0.5f);
        r = cuMemcpyHtoD(m[i], h, 4 * MiB);
        free(h);
        if (r != CUDA_SUCCESS) {
            fprintf(stderr, "host-limit: cuMemcpyHtoD %d: %d\n", i, (int)r);
            failures++;
            continue;
        }
        good[i] = 1;
    }
    CHECK(shim || failures == 0);
    /* what was stored is there, also after being used by a kernel */
    for (int i = 0; i < 4; i++) {
        if (!good[i])
            continue;
        CHECK(verify(m[i], 4 * MiB, 30 + (uint64_t)i));
        /* Loaded straight to VRAM, a buffer needs host backing when it must make room
         * for another: without it, the kernel is refused and nothing is lost. */
        CUresult kr = pg_checksum(&K, NULL, out, m[i], 4 * MiB);
        CHECK(kr == CUDA_SUCCESS || (shim && kr == CUDA_ERROR_OUT_OF_MEMORY));
        if (kr != CUDA_SUCCESS)
            fprintf(stderr, "host-limit: kernel on %d refused: %d\n", i, (int)kr);
        CHECK(verify(m[i], 4 * MiB, 30 + (uint64_t)i));
    }
    CHECK_CU(cuCtxSynchronize());
    for (int i = 0; i < 4; i++)
        if (m[i])
            CHECK_CU(cuMemFree(m[i]));
    /* after freeing, one allocation fits again */
    CUdeviceptr again;
    CHECK_CU(cuMemAlloc(&again, 4 * MiB));
    upload(again, 4 * MiB, 40);
    CHECK(verify(again, 4 * MiB, 40));
    printf("host limit: as expected; sum 0x%016llx\n", (unsigned long long)kernel_sum(out, again, 4 * MiB));
    CHECK_CU(cuCtxSynchronize());
    CHECK_CU(cuMemFree(again));
    CHECK_CU(cuMemFree(out));
    return 0;
}

/* A loader that interleaves small unmanaged allocations with its weights (16 weights of
 * 4 MiB, each followed by 256 KiB): with BLOCKSWAP_VRAM_LIMIT=64M the loads stop 1/16
 * short of the limit, so the small ones still fit and loading evicts (and writes back)
 * nothing; the weights that do not fit go to host backing. */
static int interleaved(void)
{
    int shim = pg_shim_enabled();
    CUdeviceptr w[16], small[16];
    for (int i = 0; i < 16; i++) {
        CHECK_CU(cuMemAlloc(&w[i], 4 * MiB));
        upload(w[i], 4 * MiB, 50 + (uint64_t)i);
        CHECK_CU(cuMemAlloc(&small[i], 256 * 1024));
    }
    if (shim) {
        struct blockswap_stats st;
        pg_stats(&st);
        pg_print_stats("after load", &st);
        CHECK_EQ_U64(st.evictions, 0);
        CHECK_EQ_U64(st.writeback_bytes, 0);
        CHECK(st.load_direct_bytes > 0 && st.host_backing_bytes > 0);
    }
    for (int i = 0; i < 16; i++)
        CHECK(verify(w[i], 4 * MiB, 50 + (uint64_t)i));
    printf("interleaved: weights intact\n");
    for (int i = 0; i < 16; i++) {
        CHECK_CU(cuMemFree(w[i]));
        CHECK_CU(cuMemFree(small[i]));
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    pg_init(&K);
    if (!strcmp(mode, "frees"))
        return frees();
    if (!strcmp(mode, "oom"))
        return oom();
    if (!strcmp(mode, "unmanaged"))
        return unmanaged();
    if (!strcmp(mode, "host-limit"))
        return host_limit();
    if (!strcmp(mode, "interleaved"))
        return interleaved();
    fprintf(stderr, "usage: baduse frees|oom|unmanaged|host-limit|interleaved\n");
    return 2;
}
