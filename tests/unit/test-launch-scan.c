/* Unit: the parameter scanner finds tracked allocations through packed buffers,
 * struct members, interior pointers and recorded tensor maps, and nothing else. */
#include "bs.h"
#include "cutest.h"

#include <string.h>


static void insert(uint64_t base, uint64_t size)
{
    struct bs_alloc_rec r = { .base = base, .size = size, .api = 1 };
    CHECK(bs_alloc_map_insert(&r) == 0);
}

static bool has(const struct bs_launch_set *s, uint64_t base)
{
    for (int i = 0; i < s->n; i++)
        if (s->bases[i] == base)
            return true;
    return false;
}

int main(void)
{
    bs_log_set_level(BS_LOG_ERROR);
    const uint64_t A = 0x7e0000000000ull, B = A + (64ull << 20), C = B + (64ull << 20);
    insert(A, 4096);
    insert(B, 32ull << 20);
    insert(C, 1 << 20);

    /* Packed buffer like the `extra` form: struct { ptr y; ptr W; ptr x; u32 r, c; } */
    struct { uint64_t y, w, x; uint32_t rows, cols; } args = { A + 16, B + (20ull << 20), 42, 7, 9 };
    struct bs_launch_set set = { 0 };
    bs_scan_bytes((const unsigned char *)&args, sizeof(args), &set);
    CHECK(set.n == 2 && has(&set, A) && has(&set, B) && !has(&set, C));

    /* Duplicates count once; a word just past the end is not a hit. */
    uint64_t words[4] = { C, C + 100, C + (1 << 20), A + 4095 };
    set.n = 0;
    bs_scan_bytes((const unsigned char *)words, sizeof(words), &set);
    CHECK(set.n == 2 && has(&set, C) && has(&set, A));

    /* The extra form through bs_launch_scan, with no layout available. */
    size_t len = sizeof(args);
    void *extra[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, &args, CU_LAUNCH_PARAM_BUFFER_SIZE,
                      &len, CU_LAUNCH_PARAM_END };
    CHECK(bs_launch_scan((CUfunction)0x1234, NULL, extra, 32768, &set) == 0);
    CHECK(set.n == 2 && has(&set, A) && has(&set, B));
    /* The scan limit bounds the bytes read. */
    CHECK(bs_launch_scan((CUfunction)0x1234, NULL, extra, 8, &set) == 0);
    CHECK(set.n == 1 && has(&set, A));
    /* kernelParams without a driver layout cannot be scanned: said, not guessed. */
    void *kp[] = { &args };
    CHECK(bs_launch_scan((CUfunction)0x1234, kp, NULL, 32768, &set) == -ENOTSUP);

    /* A tensor map whose bytes hide the address is found once recorded. */
    CUtensorMap tmap;
    memset(&tmap, 0x5a, sizeof(tmap));
    CHECK(bs_tensormap_lookup(&tmap) == 0);
    bs_tensormap_record(&tmap, (void *)(uintptr_t)(C + 64));
    CHECK(bs_tensormap_lookup(&tmap) == C + 64);
    struct { CUtensorMap m; uint32_t v; } __attribute__((aligned(64))) tp = { tmap, 3 };
    len = sizeof(tp);
    void *extra2[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, &tp, CU_LAUNCH_PARAM_BUFFER_SIZE,
                       &len, CU_LAUNCH_PARAM_END };
    CHECK(bs_launch_scan((CUfunction)0x5678, NULL, extra2, 32768, &set) == 0);
    CHECK(set.n == 1 && has(&set, C));
    return 0;
}
