/* paging: a transformer-like model larger than the VRAM limit runs with results
 * identical to the plain driver.
 *
 * N blocks (default 40), each with weights of different sizes:
 *   attn  4 matrices [d x d] packed in one allocation, used through interior pointers
 *   ffn1  [f x d]      ffn2 [d x f]
 *   vec   battn[d] b1[f] b2[d] norm[d] in one small (< 2 MiB, unmanaged) allocation
 * Weights are loaded by host-to-device copies: even blocks synchronously from pageable
 * memory (attn in four interior copies, ffn2 in two halves), odd blocks asynchronously
 * from pinned staging on a copy stream. Then S steps run the blocks in order with the
 * built-in kernels in every argument form (kernelParams, struct by value, packed
 * `extra`) through cuLaunchKernel, cuLaunchKernelEx and cuLaunchCooperativeKernel,
 * and print one checksum of the activations per step.
 *
 * Sync mode: cuMemAlloc / cuMemAllocPitch weights, persistent activations.
 * --async:   cuMemAllocAsync / cuMemAllocFromPoolAsync weights, per-block activations
 *            allocated and freed stream-ordered on --streams N streams, ordered by events.
 * --check-lazy: with the shim's paging API, check that loading made nothing resident
 *            (no VRAM spike at load) and that running paged everything in.
 * --print-sizes: print the byte counts the limits are computed from, and exit.
 *
 * usage: blocks [--blocks N] [--d D] [--f F] [--steps S] [--async] [--streams N]
 *               [--check-lazy] [--print-sizes] */
#include "paging.h"

#include <errno.h>

static int nblocks = 40, steps = 3, nstreams = 0, async_mode, check_lazy, print_sizes;
static uint32_t d = 512, f = 1152;

struct block {
    CUdeviceptr attn, ffn1, ffn2, vec;
    CUevent ready;
};

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static size_t attn_bytes(void) { return (size_t)4 * d * d * 4; }
static size_t ffn_bytes(void) { return (size_t)f * d * 4; }
static size_t vec_floats(void) { return (size_t)3 * d + f; }

/* Host content of block b's matrix m (0-3 attn q,k,v,o; 4 ffn1; 5 ffn2; 6 vec). */
static void gen(float *dst, int b, int m)
{
    size_t n = m < 4 ? (size_t)d * d : m < 6 ? (size_t)f * d : vec_floats();
    uint32_t cols = m == 5 ? f : d;
    float scale = m == 6 ? 0.1f : 1.7f / sqrtf((float)cols);
    pg_fill_floats(dst, n, (uint64_t)b * 16 + (uint64_t)m, scale);
}

static void usage(void)
{
    fprintf(stderr, "usage: blocks [--blocks N] [--d D] [--f F] [--steps S] [--async] [--streams N] "
                    "[--check-lazy] [--print-sizes]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--async"))
            async_mode = 1;
        else if (!strcmp(a, "--check-lazy"))
            check_lazy = 1;
        else if (!strcmp(a, "--print-sizes"))
            print_sizes = 1;
        else if (v && !strcmp(a, "--blocks"))
            nblocks = atoi(v), i++;
        else if (v && !strcmp(a, "--d"))
            d = (uint32_t)atoi(v), i++;
        else if (v && !strcmp(a, "--f"))
            f = (uint32_t)atoi(v), i++;
        else if (v && !strcmp(a, "--steps"))
            steps = atoi(v), i++;
        else if (v && !strcmp(a, "--streams"))
            nstreams = atoi(v), i++;
        else
            usage();
    }
    if (nstreams == 0)
        nstreams = async_mode ? 3 : 1;
    /* f a multiple of 128 keeps cuMemAllocPitch's pitch equal to the row size. */
    if (nblocks < 1 || nblocks > 1000 || d < 16 || d > 4096 || d % 16 || f < 128 || f > 16384 || f % 128 ||
        steps < 1 || steps > 100 || nstreams < 1 || nstreams > 8)
        usage();
}

/* Unmanaged device bytes at most live at once, each allocation rounded to 64 KiB. */
static size_t unmanaged_bytes(void)
{
    size_t k = 64 * 1024;
    size_t temps = 4 * round_up(d * 4, k) + round_up(f * 4, k);
    size_t n = (size_t)nblocks * round_up(vec_floats() * 4, k) + round_up(d * 4, k) +
               round_up(8 * (size_t)steps, k);
    return n + (async_mode ? (size_t)(nstreams + 1) * temps : temps);
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    size_t block_raw = attn_bytes() + 2 * ffn_bytes();
    size_t block_paged = round_up(attn_bytes(), 2 * MiB) + 2 * round_up(ffn_bytes(), 2 * MiB);
    if (print_sizes) {
        printf("sizes blocks=%d block_raw=%zu block_paged=%zu model_raw=%zu model_paged=%zu "
               "largest_paged=%zu unmanaged=%zu\n",
               nblocks, block_raw, block_paged, block_raw * nblocks, block_paged * nblocks,
               round_up(attn_bytes(), 2 * MiB), unmanaged_bytes());
        return 0;
    }

    struct pg_kernels K;
    pg_init(&K);
    CUstream copy, st[8];
    CHECK_CU(cuStreamCreate(&copy, CU_STREAM_NON_BLOCKING));
    for (int i = 0; i < nstreams; i++)
        CHECK_CU(cuStreamCreate(&st[i], CU_STREAM_NON_BLOCKING));
    CUmemoryPool pool;
    CHECK_CU(cuDeviceGetDefaultMemPool(&pool, K.k.dev));

    struct block *B = calloc((size_t)nblocks, sizeof(*B));
    size_t stage_floats = block_raw / 4 + vec_floats();
    float *pageable = malloc(stage_floats * 4), *stage[2];
    CUevent stage_ev[2];
    CHECK(B && pageable);
    for (int i = 0; i < 2; i++) {
        CHECK_CU(cuMemAllocHost((void **)&stage[i], stage_floats * 4));
        CHECK_CU(cuEventCreate(&stage_ev[i], CU_EVENT_DISABLE_TIMING));
    }

    /* ---- load ---- */
    for (int b = 0; b < nblocks; b++) {
        struct block *bl = &B[b];
        CHECK_CU(cuEventCreate(&bl->ready, CU_EVENT_DISABLE_TIMING));
        if (async_mode) {
            CHECK_CU(cuMemAllocAsync(&bl->attn, attn_bytes(), copy));
            CHECK_CU(cuMemAllocFromPoolAsync(&bl->ffn1, ffn_bytes(), pool, copy));
            CHECK_CU(cuMemAllocAsync(&bl->ffn2, ffn_bytes(), copy));
            CHECK_CU(cuMemAllocAsync(&bl->vec, vec_floats() * 4, copy));
        } else {
            size_t pitch;
            CHECK_CU(cuMemAlloc(&bl->attn, attn_bytes()));
            CHECK_CU(cuMemAlloc(&bl->ffn1, ffn_bytes()));
            CHECK_CU(cuMemAllocPitch(&bl->ffn2, &pitch, (size_t)f * 4, d, 4));
            CHECK_EQ_U64(pitch, (size_t)f * 4);
            CHECK_CU(cuMemAlloc(&bl->vec, vec_floats() * 4));
        }
        size_t mm = (size_t)d * d; /* floats per attention matrix */
        if (b % 2 == 0) {
            /* Synchronous, pageable; the allocations above must be usable first. */
            if (async_mode)
                CHECK_CU(cuStreamSynchronize(copy));
            for (int m = 0; m < 4; m++) {
                gen(pageable, b, m);
                CHECK_CU(cuMemcpyHtoD(bl->attn + (size_t)m * mm * 4, pageable, mm * 4));
            }
            gen(pageable, b, 4);
            CHECK_CU(cuMemcpyHtoD(bl->ffn1, pageable, ffn_bytes()));
            gen(pageable, b, 5);
            size_t half = ffn_bytes() / 2;
            CHECK_CU(cuMemcpyHtoD(bl->ffn2 + half, (char *)pageable + half, ffn_bytes() - half));
            CHECK_CU(cuMemcpy(bl->ffn2, (CUdeviceptr)pageable, half));
            gen(pageable, b, 6);
            CHECK_CU(cuMemcpyHtoD(bl->vec, pageable, vec_floats() * 4));
            /* Later work on non-blocking streams waits for this. */
            CHECK_CU(cuEventRecord(bl->ready, NULL));
        } else {
            int i = (b / 2) % 2;
            CHECK_CU(cuEventSynchronize(stage_ev[i])); /* staging slot free again */
            float *h = stage[i];
            for (int m = 0; m < 4; m++)
                gen(h + (size_t)m * mm, b, m);
            gen(h + 4 * mm, b, 4);
            gen(h + 4 * mm + ffn_bytes() / 4, b, 5);
            gen(h + block_raw / 4, b, 6);
            CHECK_CU(cuMemcpyHtoDAsync(bl->attn, h, attn_bytes(), copy));
            CHECK_CU(cuMemcpyHtoDAsync(bl->ffn1, h + 4 * mm, ffn_bytes(), copy));
            CHECK_CU(cuMemcpyHtoDAsync(bl->ffn2, h + 4 * mm + ffn_bytes() / 4, ffn_bytes(), copy));
            CHECK_CU(cuMemcpyHtoDAsync(bl->vec, h + block_raw / 4, vec_floats() * 4, copy));
            CHECK_CU(cuEventRecord(stage_ev[i], copy));
            CHECK_CU(cuEventRecord(bl->ready, copy));
        }
    }

    /* The loader's small allocations fit the room loads leave (1/16 of the limit):
     * loading evicted nothing, so nothing was written back. */
    if (check_lazy && pg_want_api()) {
        struct blockswap_stats sl;
        pg_stats(&sl);
        CHECK_EQ_U64(sl.evictions, 0);
        CHECK(sl.load_direct_bytes > 0);
    }

    /* Read back parts of two blocks right after loading (from the host backing under
     * the shim when they are not resident) and compare with what was loaded. */
    CHECK_CU(cuStreamSynchronize(copy));
    for (int b = 0; b < nblocks && b < 2; b++) {
        float *want = malloc(ffn_bytes()), *got = malloc(ffn_bytes());
        CHECK(want && got);
        gen(want, b, 5);
        CHECK_CU(cuMemcpyDtoH(got, B[b].ffn2, ffn_bytes()));
        CHECK(memcmp(want, got, ffn_bytes()) == 0);
        gen(want, b, 3);
        CHECK_CU(cuMemcpyDtoH(got, B[b].attn + (size_t)3 * d * d * 4, (size_t)d * d * 4));
        CHECK(memcmp(want, got, (size_t)d * d * 4) == 0);
        free(want);
        free(got);
    }

    int api = check_lazy && pg_want_api();
    struct blockswap_stats s0, s1;
    if (api) {
        /* Loading a model larger than the limit filled VRAM up to the limit, loaded
         * straight there, and put the rest in host backing: no byte in both, but what
         * the read-back above paged in again (it is a use: the blocks are detected
         * and the swapped ones moved to host backing once). */
        CHECK_CU(cuCtxSynchronize());
        int absent = 0;
        for (int b = 0; b < nblocks; b++) {
            absent += pg_is_resident(B[b].attn) == 0;
            CHECK(pg_is_resident(B[b].vec) == -ENOENT); /* small: not managed */
        }
        pg_stats(&s0);
        pg_print_stats("after load", &s0);
        CHECK(absent > 0);
        CHECK(s0.resident_bytes > 0);
        CHECK(s0.load_direct_bytes > 0);
        CHECK_EQ_U64(s0.managed_allocations, (uint64_t)3 * nblocks);
        CHECK(s0.managed_bytes >= block_raw * nblocks && s0.managed_bytes <= block_paged * nblocks);
        CHECK(s0.resident_bytes + s0.host_backing_bytes >= block_raw * nblocks);
        /* Host backing only for what is not resident, or was paged in again. */
        CHECK(s0.host_backing_bytes <= block_paged * nblocks - s0.resident_bytes +
                                           s0.page_ins * block_paged);
        uint64_t lim = pg_env_size("BLOCKSWAP_VRAM_LIMIT");
        if (lim)
            CHECK_EQ_U64(s0.vram_limit, lim);
        CHECK(s0.unmanaged_bytes <= lim || !lim);
    }

    /* ---- steps ---- */
    CUdeviceptr x, out;
    CUstream s_first = st[0];
    if (async_mode) {
        CHECK_CU(cuMemAllocAsync(&x, (size_t)d * 4, s_first));
        CHECK_CU(cuMemAllocAsync(&out, 8 * (size_t)steps, s_first));
    } else {
        CHECK_CU(cuMemAlloc(&x, (size_t)d * 4));
        CHECK_CU(cuMemAlloc(&out, 8 * (size_t)steps));
    }
    float *x0 = malloc((size_t)d * 4);
    CHECK(x0);
    pg_fill_floats(x0, d, 999, 0.5f);
    CHECK_CU(cuMemcpyHtoDAsync(x, x0, (size_t)d * 4, s_first)); /* pageable: staged before return */
    CUdeviceptr q = 0, k = 0, v = 0, o = 0, h = 0;
    if (!async_mode) {
        CHECK_CU(cuMemAlloc(&q, (size_t)d * 4));
        CHECK_CU(cuMemAlloc(&k, (size_t)d * 4));
        CHECK_CU(cuMemAlloc(&v, (size_t)d * 4));
        CHECK_CU(cuMemAlloc(&o, (size_t)d * 4));
        CHECK_CU(cuMemAlloc(&h, (size_t)f * 4));
    }
    CUevent done;
    CHECK_CU(cuEventCreate(&done, CU_EVENT_DISABLE_TIMING));
    CHECK_CU(cuEventRecord(done, s_first));
    uint64_t nd = d, nf = f;
    size_t mb = (size_t)d * d * 4;
    for (int step = 0; step < steps; step++) {
        for (int b = 0; b < nblocks; b++) {
            struct block *bl = &B[b];
            CUstream s = st[(b + step) % nstreams];
            pg_flavor = (b / 3 + step) % 3; /* cuLaunchKernel, cuLaunchKernelEx, cooperative */
            CHECK_CU(cuStreamWaitEvent(s, done, 0));
            CHECK_CU(cuStreamWaitEvent(s, bl->ready, 0));
            if (async_mode) {
                CHECK_CU(cuMemAllocAsync(&q, (size_t)d * 4, s));
                CHECK_CU(cuMemAllocAsync(&k, (size_t)d * 4, s));
                CHECK_CU(cuMemAllocAsync(&v, (size_t)d * 4, s));
                CHECK_CU(cuMemAllocAsync(&o, (size_t)d * 4, s));
                CHECK_CU(cuMemAllocAsync(&h, (size_t)f * 4, s));
            }
            CUdeviceptr battn = bl->vec, b1 = bl->vec + (size_t)d * 4, b2 = b1 + (size_t)f * 4,
                        norm = b2 + (size_t)d * 4;
            /* attention: q, k, v, o through the three argument forms, interior pointers */
            CHECK_CU(pg_gemv(&K, s, PG_STRUCT, q, bl->attn, x, d, d));
            CHECK_CU(pg_gemv(&K, s, PG_PARAMS, k, bl->attn + mb, x, d, d));
            CHECK_CU(pg_gemv(&K, s, PG_EXTRA, v, bl->attn + 2 * mb, x, d, d));
            CHECK_CU(pg_axpy(&K, s, q, k, 0.5f, nd));
            CHECK_CU(pg_axpy(&K, s, q, v, 0.25f, nd));
            CHECK_CU(pg_tanh(&K, s, q, nd));
            CHECK_CU(pg_gemv(&K, s, (enum pg_form)(b % 3), o, bl->attn + 3 * mb, q, d, d));
            CHECK_CU(pg_axpy(&K, s, x, o, 0.5f, nd));
            CHECK_CU(pg_axpy(&K, s, x, battn, 1.0f, nd));
            CHECK_CU(pg_tanh(&K, s, x, nd));
            /* feed-forward */
            CHECK_CU(pg_gemv(&K, s, (enum pg_form)((b + 1) % 3), h, bl->ffn1, x, f, d));
            CHECK_CU(pg_axpy(&K, s, h, b1, 1.0f, nf));
            CHECK_CU(pg_tanh(&K, s, h, nf));
            CHECK_CU(pg_gemv(&K, s, (enum pg_form)((b + 2) % 3), o, bl->ffn2, h, d, f));
            CHECK_CU(pg_axpy(&K, s, x, o, 0.5f, nd));
            CHECK_CU(pg_axpy(&K, s, x, b2, 1.0f, nd));
            CHECK_CU(pg_axpy(&K, s, x, norm, 0.25f, nd));
            CHECK_CU(pg_tanh(&K, s, x, nd));
            if (b == nblocks - 1)
                CHECK_CU(pg_checksum(&K, s, out + 8 * (size_t)step, x, (uint64_t)d * 4));
            if (async_mode) {
                CHECK_CU(cuMemFreeAsync(q, s));
                CHECK_CU(cuMemFreeAsync(k, s));
                CHECK_CU(cuMemFreeAsync(v, s));
                CHECK_CU(cuMemFreeAsync(o, s));
                CHECK_CU(cuMemFreeAsync(h, s));
            }
            CHECK_CU(cuEventRecord(done, s));
        }
    }
    uint64_t *sums = calloc((size_t)steps, 8);
    CHECK(sums);
    CHECK_CU(cuStreamWaitEvent(s_first, done, 0));
    CHECK_CU(cuMemcpyDtoHAsync(sums, out, 8 * (size_t)steps, s_first));
    CHECK_CU(cuStreamSynchronize(s_first));
    for (int step = 0; step < steps; step++)
        printf("blocks %d d %u f %u step %d checksum 0x%016llx\n", nblocks, d, f, step,
               (unsigned long long)sums[step]);

    if (api) {
        pg_stats(&s1);
        pg_print_stats("after steps", &s1);
        /* Every weight was needed: loaded straight to VRAM, or paged in. */
        CHECK(s1.page_in_bytes + s1.load_direct_bytes >= block_raw * nblocks);
        CHECK(s1.page_in_bytes > 0);
        CHECK(s1.resident_bytes <= s1.vram_limit);
        if (block_paged * nblocks > s1.vram_limit)
            CHECK(s1.evictions > 0);
    }

    /* Weights are unchanged after paging: check some blocks completely. */
    float *want = malloc(attn_bytes()), *got = malloc(attn_bytes());
    CHECK(want && got);
    for (int b = 0; b < nblocks; b++) {
        if (b % 8 && b != nblocks - 1)
            continue;
        for (int m = 0; m < 4; m++)
            gen(want + (size_t)m * d * d, b, m);
        CHECK_CU(cuMemcpyDtoH(got, B[b].attn, attn_bytes()));
        CHECK(memcmp(want, got, attn_bytes()) == 0);
        gen(want, b, 4);
        CHECK_CU(cuMemcpyDtoH(got, B[b].ffn1, ffn_bytes()));
        CHECK(memcmp(want, got, ffn_bytes()) == 0);
        gen(want, b, 5);
        CHECK_CU(cuMemcpyDtoH(got, B[b].ffn2, ffn_bytes()));
        CHECK(memcmp(want, got, ffn_bytes()) == 0);
    }
    printf("weights intact\n");

    /* ---- teardown ---- */
    if (async_mode) {
        CHECK_CU(cuStreamWaitEvent(copy, done, 0));
        for (int b = 0; b < nblocks; b++) {
            CHECK_CU(cuMemFreeAsync(B[b].attn, copy));
            CHECK_CU(cuMemFreeAsync(B[b].ffn1, copy));
            CHECK_CU(cuMemFreeAsync(B[b].ffn2, copy));
            CHECK_CU(cuMemFreeAsync(B[b].vec, copy));
        }
        CHECK_CU(cuMemFreeAsync(x, copy));
        CHECK_CU(cuMemFreeAsync(out, copy));
        CHECK_CU(cuStreamSynchronize(copy));
    } else {
        CHECK_CU(cuCtxSynchronize());
        for (int b = 0; b < nblocks; b++) {
            CHECK_CU(cuMemFree(B[b].attn));
            CHECK_CU(cuMemFree(B[b].ffn1));
            CHECK_CU(cuMemFree(B[b].ffn2));
            CHECK_CU(cuMemFree(B[b].vec));
        }
        CUdeviceptr act[] = { x, out, q, k, v, o, h };
        for (size_t i = 0; i < sizeof(act) / sizeof(act[0]); i++)
            CHECK_CU(cuMemFree(act[i]));
    }
    if (api) {
        struct blockswap_stats s2;
        pg_stats(&s2);
        CHECK_EQ_U64(s2.managed_allocations, 0);
        CHECK_EQ_U64(s2.resident_bytes, 0);
    }
    for (int b = 0; b < nblocks; b++)
        CHECK_CU(cuEventDestroy(B[b].ready));
    for (int i = 0; i < 2; i++)
        CHECK_CU(cuMemFreeHost(stage[i]));
    return 0;
}
