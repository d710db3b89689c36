/* paging: a kernel that reaches managed memory only through a TMA descriptor
 * (CUtensorMap, its address opaque) gets it paged in with valid data, and its writes
 * survive eviction.
 *
 * T1 and T2 are 4 MiB managed tensors [1024 x 1024] u32, loaded by host copies (so
 * not resident). bs_fill_tensormap_u32 runs on: a map of all of T1; a map of an
 * interior, strided part of T1 (rows 256..511, first 512 columns); a map of an
 * interior part of T2 through the packed `extra` form; T1's map moved into T2 with
 * cuTensorMapReplaceAddress (no new encode: the shim must follow the replacement).
 * Between them a kernel on two other 4 MiB buffers needs 8 MiB at once, which
 * under BLOCKSWAP_VRAM_LIMIT=10M evicts the tensors. Every result is read back and
 * compared with a host computation, and printed for run.py --compare; with the
 * shim's API the evictions are confirmed.
 *
 * usage: tensormap */
#include "paging.h"

#define DIM 1024u
#define NEL ((size_t)DIM * DIM)
#define BYTES (NEL * 4)

static struct pg_kernels K;
static CUfunction tmfill;
static CUdeviceptr F1, F2;
static int forced;

static void evict_others(void)
{
    CHECK_CU(pg_axpy(&K, NULL, F1, F2, 0.5f, NEL));
    CHECK_CU(cuCtxSynchronize());
}

static void check(const char *what, CUdeviceptr p, const uint32_t *want)
{
    uint32_t *got = malloc(BYTES);
    CHECK(got);
    CHECK_CU(cuMemcpyDtoH(got, p, BYTES));
    for (size_t i = 0; i < NEL; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "%s: element %zu is 0x%x, expected 0x%x\n", what, i, got[i], want[i]);
            exit(1);
        }
    printf("%s: fnv 0x%016llx\n", what, (unsigned long long)pg_fnv(got, BYTES));
    free(got);
}

static void encode(CUtensorMap *map, CUdeviceptr base, cuuint64_t cols, cuuint64_t rows)
{
    cuuint64_t dims[2] = { cols, rows }, strides[1] = { DIM * 4 };
    cuuint32_t box[2] = { 64, 1 }, es[2] = { 1, 1 };
    CHECK_CU(cuTensorMapEncodeTiled(map, CU_TENSOR_MAP_DATA_TYPE_UINT32, 2, (void *)base, dims, strides, box,
                                    es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                                    CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
}

static void fill_map(const CUtensorMap *map, uint32_t v, int packed)
{
    if (packed) {
        /* map at offset 0 (aligned 128), value at 128 */
        _Alignas(128) unsigned char buf[256];
        memset(buf, 0, sizeof(buf));
        memcpy(buf, map, sizeof(*map));
        memcpy(buf + 128, &v, 4);
        size_t size = 132;
        void *extra[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, buf, CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
                          CU_LAUNCH_PARAM_END };
        CHECK_CU(pg_launch(tmfill, NULL, NULL, extra));
    } else {
        CUtensorMap m = *map;
        void *p[] = { &m, &v };
        CHECK_CU(pg_launch(tmfill, NULL, p, NULL));
    }
}

static void expect_evicted(CUdeviceptr p)
{
    if (forced)
        CHECK_EQ_U64(pg_is_resident(p), 0);
}

int main(void)
{
    pg_init(&K);
    tmfill = kit_fn(&K.k, "bs_fill_tensormap_u32");
    uint64_t lim = pg_env_size("BLOCKSWAP_VRAM_LIMIT");
    forced = pg_want_api() && lim && lim < 16 * MiB;

    CUdeviceptr T1, T2;
    CHECK_CU(cuMemAlloc(&T1, BYTES));
    CHECK_CU(cuMemAllocAsync(&T2, BYTES, NULL));
    CHECK_CU(cuMemAlloc(&F1, BYTES));
    CHECK_CU(cuMemAlloc(&F2, BYTES));
    uint32_t *w1 = malloc(BYTES), *w2 = malloc(BYTES);
    CHECK(w1 && w2);
    pg_fill_floats((float *)w1, NEL, 50, 1.0f);
    pg_fill_floats((float *)w2, NEL, 51, 1.0f);
    CHECK_CU(cuMemcpyHtoD(T1, w1, BYTES));
    CHECK_CU(cuMemcpyHtoD(T2, w2, BYTES));
    CHECK_CU(cuMemsetD32(F1, 0x3f800000u, NEL));
    CHECK_CU(cuMemsetD32(F2, 0x40000000u, NEL));
    CHECK_CU(cuCtxSynchronize());
    expect_evicted(T1);
    expect_evicted(T2);

    /* all of T1 */
    CUtensorMap whole, part;
    encode(&whole, T1, DIM, DIM);
    pg_flavor = 0;
    fill_map(&whole, 7, 0);
    for (size_t i = 0; i < NEL; i++)
        w1[i] = 7;
    evict_others();
    expect_evicted(T1);
    check("T1 after whole-map fill", T1, w1);

    /* an interior, strided part of T1: rows 256..511, columns 0..511 */
    encode(&part, T1 + (size_t)256 * DIM * 4, 512, 256);
    pg_flavor = 1;
    fill_map(&part, 9, 0);
    for (size_t r = 256; r < 512; r++)
        for (size_t c = 0; c < 512; c++)
            w1[r * DIM + c] = 9;
    evict_others();
    expect_evicted(T1);
    check("T1 after interior-map fill", T1, w1);

    /* a map of an interior part of T2, launched through the packed `extra` form */
    CUtensorMap part2;
    encode(&part2, T2 + (size_t)512 * DIM * 4, 512, 256);
    pg_flavor = 2;
    fill_map(&part2, 11, 1);
    for (size_t r = 512; r < 768; r++)
        for (size_t c = 0; c < 512; c++)
            w2[r * DIM + c] = 11;
    evict_others();
    expect_evicted(T2);
    check("T2 after packed interior-map fill", T2, w2);

    /* T1's interior map moved to another part of T2 with cuTensorMapReplaceAddress:
     * the descriptor now points elsewhere without a new encode */
    CHECK_CU(cuTensorMapReplaceAddress(&part, (void *)(T2 + (size_t)768 * DIM * 4 + 2048)));
    pg_flavor = 0;
    fill_map(&part, 13, 0);
    for (size_t r = 768; r < 1024; r++)
        for (size_t c = 512; c < 1024; c++)
            w2[r * DIM + c] = 13;
    evict_others();
    expect_evicted(T2);
    check("T2 after replaced-address fill", T2, w2);
    check("T1 unchanged by them", T1, w1);

    /* and a checksum of both through ordinary pointers */
    CUdeviceptr out;
    uint64_t sums[2];
    CHECK_CU(cuMemAlloc(&out, 16));
    CHECK_CU(pg_checksum(&K, NULL, out, T1, BYTES));
    CHECK_CU(pg_checksum(&K, NULL, out + 8, T2, BYTES));
    CHECK_CU(cuMemcpyDtoH(sums, out, 16));
    CHECK_EQ_U64(sums[0], pg_fnv(w1, BYTES));
    CHECK_EQ_U64(sums[1], pg_fnv(w2, BYTES));
    printf("device checksums match: 0x%016llx 0x%016llx\n", (unsigned long long)sums[0],
           (unsigned long long)sums[1]);

    CHECK_CU(cuCtxSynchronize());
    CUdeviceptr all[] = { T1, T2, F1, F2, out };
    for (size_t i = 0; i < 5; i++)
        CHECK_CU(cuMemFree(all[i]));
    return 0;
}
