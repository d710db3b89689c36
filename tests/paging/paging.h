/* Helpers shared by the paging tests: deterministic random data, the built-in
 * kernels in each argument form the shim must scan (kernelParams, struct by value,
 * packed `extra` buffer), and optional access to the shim's paging API.
 *
 * A paging test prints only what is the same with and without blockswap (checksums,
 * CUresult values), so run.py --compare can use the plain simulator as reference.
 * Checks that need the shim's API run only when the API is there; with
 * PAGING_REQUIRE_SHIM=1 in the environment (run.py --shim-env) its absence fails. */
#ifndef BS_PAGING_TEST_H
#define BS_PAGING_TEST_H

#include "kit.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB (1024ull * 1024ull)

/* ---- random data ------------------------------------------------------------- */

static inline uint64_t pg_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

struct pg_rng {
    uint64_t s;
};

static inline uint64_t pg_next(struct pg_rng *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    return pg_mix(r->s);
}

/* Uniform in [lo, hi] (inclusive). */
static inline uint64_t pg_range(struct pg_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + pg_next(r) % (hi - lo + 1);
}

/* n floats uniform in [-scale, scale), a pure function of (seed, index): the same
 * matrix can be regenerated later to check what the device holds. */
static inline void pg_fill_floats(float *dst, size_t n, uint64_t seed, float scale)
{
    uint64_t s = pg_mix(seed + 0x1234567ull);
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)(uint32_t)(s >> 40) / 16777216.0f; /* [0,1) */
        dst[i] = (u * 2.0f - 1.0f) * scale;
    }
}

/* 64-bit FNV-1a, as bs_checksum_u64 computes it on the device. */
static inline uint64_t pg_fnv(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- kernels ----------------------------------------------------------------- */

struct pg_kernels {
    struct kit k;
    CUfunction fill, gemv, gemv_struct, axpy, tanh_f, checksum;
};

static inline void pg_init(struct pg_kernels *K)
{
    kit_init(&K->k);
    K->fill = kit_fn(&K->k, "bs_fill_u32");
    K->gemv = kit_fn(&K->k, "bs_gemv_f32");
    K->gemv_struct = kit_fn(&K->k, "bs_gemv_struct_f32");
    K->axpy = kit_fn(&K->k, "bs_axpy_f32");
    K->tanh_f = kit_fn(&K->k, "bs_tanh_f32");
    K->checksum = kit_fn(&K->k, "bs_checksum_u64");
}

enum pg_form { PG_PARAMS, PG_STRUCT, PG_EXTRA };

/* Which launch entry point the helpers below use: 0 cuLaunchKernel, 1
 * cuLaunchKernelEx, 2 cuLaunchCooperativeKernel (kernelParams only; `extra`
 * launches fall back to cuLaunchKernel). Tests vary it. */
static int pg_flavor;

static inline CUresult pg_launch(CUfunction f, CUstream s, void **params, void **extra)
{
    if (pg_flavor == 1) {
        CUlaunchConfig cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.gridDimX = cfg.gridDimY = cfg.gridDimZ = 1;
        cfg.blockDimX = 128;
        cfg.blockDimY = cfg.blockDimZ = 1;
        cfg.hStream = s;
        return cuLaunchKernelEx(&cfg, f, params, extra);
    }
    if (pg_flavor == 2 && !extra)
        return cuLaunchCooperativeKernel(f, 1, 1, 1, 128, 1, 1, 0, s, params);
    return cuLaunchKernel(f, 1, 1, 1, 128, 1, 1, 0, s, params, extra);
}

/* y = W x with W [rows x cols], in one of three argument forms. Returns the result
 * of the launch (a test decides whether failure is fatal). */
static inline CUresult pg_gemv(struct pg_kernels *K, CUstream s, enum pg_form form, CUdeviceptr y,
                               CUdeviceptr W, CUdeviceptr x, uint32_t rows, uint32_t cols)
{
    if (form == PG_STRUCT) {
        struct { CUdeviceptr y, W, x; uint32_t rows, cols; } a = { y, W, x, rows, cols };
        void *p[] = { &a };
        return pg_launch(K->gemv_struct, s, p, NULL);
    }
    if (form == PG_EXTRA) {
        /* bs_gemv_f32's packed layout: y@0 W@8 x@16 rows@24 cols@28, 32 bytes. */
        unsigned char buf[32];
        memcpy(buf + 0, &y, 8);
        memcpy(buf + 8, &W, 8);
        memcpy(buf + 16, &x, 8);
        memcpy(buf + 24, &rows, 4);
        memcpy(buf + 28, &cols, 4);
        size_t size = sizeof(buf);
        void *extra[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, buf, CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
                          CU_LAUNCH_PARAM_END };
        return pg_launch(K->gemv, s, NULL, extra);
    }
    void *p[] = { &y, &W, &x, &rows, &cols };
    return pg_launch(K->gemv, s, p, NULL);
}

/* y += a x over n floats. */
static inline CUresult pg_axpy(struct pg_kernels *K, CUstream s, CUdeviceptr y, CUdeviceptr x, float a,
                               uint64_t n)
{
    void *p[] = { &y, &x, &a, &n };
    return pg_launch(K->axpy, s, p, NULL);
}

static inline CUresult pg_tanh(struct pg_kernels *K, CUstream s, CUdeviceptr y, uint64_t n)
{
    void *p[] = { &y, &n };
    return pg_launch(K->tanh_f, s, p, NULL);
}

static inline CUresult pg_fill(struct pg_kernels *K, CUstream s, CUdeviceptr dst, uint32_t v, uint64_t n)
{
    void *p[] = { &dst, &v, &n };
    return pg_launch(K->fill, s, p, NULL);
}

static inline CUresult pg_checksum(struct pg_kernels *K, CUstream s, CUdeviceptr out, CUdeviceptr data,
                                   uint64_t bytes)
{
    void *p[] = { &out, &data, &bytes };
    return pg_launch(K->checksum, s, p, NULL);
}

/* ---- the shim's paging API, when it is there ----------------------------------- */

/* 1 when blockswap is preloaded and enabled, 0 otherwise. */
static inline int pg_shim_enabled(void)
{
    int (*en)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "blockswap_enabled");
    return en && en();
}

/* 1 when the paging API should be checked. With PAGING_REQUIRE_SHIM=1 a missing or
 * disabled shim is a failure. PG_HAVE_PAGING_STATS comes from meson (the paging
 * fields of struct blockswap_stats in include/blockswap.h, found at configure time). */
static inline int pg_want_api(void)
{
    const char *req = getenv("PAGING_REQUIRE_SHIM");
    int need = req && strcmp(req, "1") == 0;
#if !PG_HAVE_PAGING_STATS
    if (need) {
        fprintf(stderr, "built without the paging fields of struct blockswap_stats: "
                        "reconfigure (meson setup --reconfigure) once include/blockswap.h has them\n");
        exit(1);
    }
    return 0;
#endif
    int have = pg_shim_enabled() && dlsym(RTLD_DEFAULT, "blockswap_is_resident");
    if (need && !have) {
        fprintf(stderr, "PAGING_REQUIRE_SHIM=1 but blockswap's paging API is not available\n");
        exit(1);
    }
    return have;
}

/* blockswap_is_resident through dlsym: 1, 0, -ENOENT. */
static inline int pg_is_resident(CUdeviceptr p)
{
    int (*f)(uint64_t) = (int (*)(uint64_t))kit_api("blockswap_is_resident");
    return f((uint64_t)p);
}

#if PG_HAVE_PAGING_STATS
static inline void pg_stats(struct blockswap_stats *st)
{
    memset(st, 0, sizeof(*st));
    CHECK(BS_API_FN(blockswap_get_stats)(st) == 0);
}

static inline void pg_print_stats(const char *when, const struct blockswap_stats *st)
{
    fprintf(stderr,
            "paging stats %s: managed %llu (%llu bytes) resident %llu unmanaged %llu host %llu "
            "page_ins %llu (%llu bytes) evictions %llu writeback %llu limit %llu\n",
            when, (unsigned long long)st->managed_allocations, (unsigned long long)st->managed_bytes,
            (unsigned long long)st->resident_bytes, (unsigned long long)st->unmanaged_bytes,
            (unsigned long long)st->host_backing_bytes, (unsigned long long)st->page_ins,
            (unsigned long long)st->page_in_bytes, (unsigned long long)st->evictions,
            (unsigned long long)st->writeback_bytes, (unsigned long long)st->vram_limit);
}
#else
/* Never called (pg_want_api() is 0); keeps the callers compiling. */
struct pg_no_stats {
    uint64_t managed_allocations, managed_bytes, resident_bytes, unmanaged_bytes, host_backing_bytes,
        page_ins, page_in_bytes, evictions, writeback_bytes, vram_limit;
};
#define blockswap_stats pg_no_stats
static inline void pg_stats(struct blockswap_stats *st) { memset(st, 0, sizeof(*st)); exit(1); }
static inline void pg_print_stats(const char *when, const struct blockswap_stats *st)
{
    (void)when;
    (void)st;
}
#endif

/* BLOCKSWAP_VRAM_LIMIT as bytes (digits with an optional K/M/G/T suffix), 0 when
 * unset or not of that form. */
static inline uint64_t pg_env_size(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    switch (*end) {
    case 'K': n <<= 10; break;
    case 'M': n <<= 20; break;
    case 'G': n <<= 30; break;
    case 'T': n <<= 40; break;
    case 0: break;
    default: return 0;
    }
    return n;
}

#endif
