/* Fuzz target: kernel parameter scanning, which reads whatever bytes an application
 * passes to a launch. A few allocations and a tensor map are tracked; the input is
 * scanned as raw words (bs_scan_bytes), as the packed `extra` buffer, and as
 * kernelParams under a parameter layout chosen by its first byte (a stand-in for
 * cuFuncGetParamInfo, one fixed layout per function handle). Every base found must be
 * a tracked allocation's. */
#include "bs.h"
#include "fuzz.h"

#include <stdlib.h>

#define BASE 0x7f0000000000ull
#define NALLOC 16

static uint64_t bases[NALLOC];

/* Handle k has k % 9 parameters of 8, 16, 24, 32 or 128 bytes, naturally aligned. */
static void layout_of(uint64_t k, uint32_t i, size_t *off, size_t *size)
{
    static const size_t sizes[] = { 8, 16, 24, 32, 128 };
    size_t o = 0, s = 0;
    for (uint32_t j = 0; j <= i; j++) {
        s = sizes[(k * 31 + j * 7) % 5];
        size_t a = s == 128 ? 64 : 8;
        o = (o + a - 1) / a * a;
        if (j < i)
            o += s;
    }
    *off = o;
    *size = s;
}

static CUresult fake_param_info(CUfunction f, size_t i, size_t *off, size_t *size)
{
    uint64_t k = (uint64_t)(uintptr_t)f;
    if (i >= k % 9)
        return CUDA_ERROR_INVALID_VALUE;
    layout_of(k, (uint32_t)i, off, size);
    return CUDA_SUCCESS;
}

void fuzz_init(void)
{
    for (int i = 0; i < NALLOC; i++) {
        /* Sizes from 1 byte to 3 MiB, some sharing a 2 MiB chunk, some spanning two. */
        uint64_t size = i % 4 == 0 ? 3ull << 20 : (uint64_t)(1 + i * 4093);
        bases[i] = BASE + (uint64_t)i * (5ull << 20) + (uint64_t)(i % 3) * 4096;
        struct bs_alloc_rec rec = { .base = bases[i], .size = size, .api = 0 };
        if (bs_alloc_map_insert(&rec) < 0)
            abort();
    }
    CUtensorMap map;
    memset(&map, 0x5a, sizeof(map));
    bs_tensormap_record(&map, (void *)(uintptr_t)(bases[3] + 64));
    bs_drv.cuFuncGetParamInfo = fake_param_info;
}

static void check(const struct bs_launch_set *set)
{
    if (set->n < 0 || set->n > BS_LAUNCH_MAX_REFS)
        abort();
    for (int i = 0; i < set->n; i++) {
        int j = 0;
        while (j < NALLOC && bases[j] != set->bases[i])
            j++;
        if (j == NALLOC)
            abort(); /* a base that is no allocation's */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bs_launch_set set = { .n = 0 };
    bs_scan_bytes(data, size, &set);
    check(&set);

    size_t len = size;
    void *extra[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, (void *)data, CU_LAUNCH_PARAM_BUFFER_SIZE,
                      &len, CU_LAUNCH_PARAM_END };
    uint64_t limit = size && data[0] & 1 ? 32768 : (size / 2);
    if (bs_launch_scan((CUfunction)(uintptr_t)(size ? data[0] : 0), NULL, extra, limit, &set) < 0)
        abort();
    check(&set);

    if (size < 1)
        return 0;
    uint64_t k = 1 + data[0] % 64; /* 64 handles: the layout cache stays small */
    void *params[8] = { 0 };
    for (uint32_t i = 0; i < k % 9; i++) {
        size_t off, sz;
        layout_of(k, i, &off, &sz);
        if (1 + off + sz <= size)
            params[i] = (void *)(data + 1 + off);
    }
    int r = bs_launch_scan((CUfunction)(uintptr_t)k, params, NULL, limit, &set);
    if (r != 0)
        abort();
    check(&set);
    return 0;
}
