/* sim: every launch path reports the tracked allocations its parameters point
 * into: by-value pointers, interior pointers, struct members, the packed `extra`
 * buffer, TMA descriptors recorded at encode time; and only those. */
#include "kit.h"

#include <stdint.h>

static uint64_t set[64];
static int n;


static void expect(int count, CUdeviceptr a, CUdeviceptr b, CUdeviceptr c)
{
    n = kit_launch_set(set, 64);
    CUdeviceptr want[3] = { a, b, c };
    if (n != count)
        goto fail;
    for (int i = 0; i < count; i++)
        if (!kit_set_has(set, n, want[i]))
            goto fail;
    return;
fail:
    fprintf(stderr, "launch set has %d entries, expected %d:", n, count);
    for (int i = 0; i < n && i < 64; i++)
        fprintf(stderr, " 0x%llx", (unsigned long long)set[i]);
    fprintf(stderr, "\n");
    exit(1);
}

int main(void)
{
    struct kit k;
    kit_init(&k);
    const uint32_t rows = 64, cols = 128;
    CUdeviceptr y, W, x, other, ptrs;
    CHECK_CU(cuMemAlloc(&y, rows * 4));
    CHECK_CU(cuMemAlloc(&W, (size_t)rows * cols * 4 + 4096)); /* room for an interior offset */
    CHECK_CU(cuMemAllocAsync(&x, cols * 4, NULL));
    CHECK_CU(cuMemAlloc(&other, 1 << 20));
    CHECK_CU(cuMemAlloc(&ptrs, 3 * sizeof(CUdeviceptr)));

    CHECK(kit_launch_set(set, 64) == -ENODATA); /* nothing launched yet */

    /* bs_fill_u32 through kernelParams. */
    CUfunction fill = kit_fn(&k, "bs_fill_u32");
    uint32_t one = 0x3f800000; /* 1.0f */
    uint64_t count = rows * cols;
    void *fp[] = { &W, &one, &count };
    CHECK_CU(kit_launch(fill, NULL, fp));
    expect(1, W, 0, 0);
    count = cols;
    void *fx[] = { &x, &one, &count };
    CHECK_CU(kit_launch(fill, NULL, fx));
    expect(1, x, 0, 0);

    /* bs_gemv_f32 with an interior pointer into W. */
    CUfunction gemv = kit_fn(&k, "bs_gemv_f32");
    CUdeviceptr W_in = W + 4096;
    uint32_t r = rows - 8, c = cols;
    void *gp[] = { &y, &W_in, &x, &r, &c };
    CHECK_CU(kit_launch(gemv, NULL, gp));
    expect(3, y, W, x);

    /* The same through `extra` on cuLaunchKernel_ptsz-style Ex launch. */
    struct { CUdeviceptr y, W, x; uint32_t rows, cols; } packed = { y, W, x, rows, cols };
    size_t len = sizeof(packed);
    void *extra[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, &packed, CU_LAUNCH_PARAM_BUFFER_SIZE,
                      &len, CU_LAUNCH_PARAM_END };
    CUlaunchConfig cfg = { .gridDimX = 1, .gridDimY = 1, .gridDimZ = 1,
                           .blockDimX = 1, .blockDimY = 1, .blockDimZ = 1 };
    CHECK_CU(cuLaunchKernelEx(&cfg, gemv, NULL, extra));
    expect(3, y, W, x);
    float hy[64];
    CHECK_CU(cuMemcpyDtoH(hy, y, sizeof(hy)));
    CHECK(hy[0] == (float)cols);

    /* Pointers inside a by-value struct parameter. */
    CUfunction gs = kit_fn(&k, "bs_gemv_struct_f32");
    void *sp[] = { &packed };
    CHECK_CU(cuLaunchCooperativeKernel(gs, 1, 1, 1, 1, 1, 1, 0, NULL, sp));
    expect(3, y, W, x);

    /* Pointers stored in device memory are invisible: only `ptrs` is seen. */
    CUdeviceptr hp[3] = { y, W, x };
    CHECK_CU(cuMemcpyHtoD(ptrs, hp, sizeof(hp)));
    CUfunction gi = kit_fn(&k, "bs_gemv_indirect_f32");
    void *ip[] = { &ptrs, &r, &c };
    CHECK_CU(kit_launch(gi, NULL, ip));
    expect(1, ptrs, 0, 0);

    /* A kernel with no pointer arguments touches nothing tracked. */
    CUfunction sl = kit_fn(&k, "bs_sleep");
    uint64_t ns = 1000;
    void *slp[] = { &ns };
    CHECK_CU(kit_launch(sl, NULL, slp));
    expect(0, 0, 0, 0);

    /* A TMA descriptor: its address is opaque, recorded at encode time. */
    CUtensorMap map;
    cuuint64_t dims[2] = { 256, 4 }, strides[1] = { 256 * 4 };
    cuuint32_t box[2] = { 64, 1 }, es[2] = { 1, 1 };
    CHECK_CU(cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_UINT32, 2, (void *)other,
                                    dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                    CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    CUfunction tf = kit_fn(&k, "bs_fill_tensormap_u32");
    uint32_t seven = 7;
    void *tp[] = { &map, &seven };
    CHECK_CU(kit_launch(tf, NULL, tp));
    expect(1, other, 0, 0);
    uint32_t got[4];
    CHECK_CU(cuMemcpyDtoH(got, other + 1020, sizeof(got)));
    CHECK(got[0] == 7 && got[3] == 7);

    struct blockswap_stats st;
    CHECK(BS_API_FN(blockswap_get_stats)(&st) == 0);
    CHECK(st.launches == 8 && st.launches_unscanned == 0 && st.tensor_maps == 1);
    CHECK(st.live_allocations == 5);
    CHECK(kit_calls("cuLaunchKernelEx") == 1 && kit_calls("cuLaunchCooperativeKernel") == 1);
    return 0;
}
