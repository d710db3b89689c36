/* sim: memory that a kernel reaches only through pointers stored in device memory is
 * invisible to any interposer; blockswap_pin keeps it resident so such a kernel works
 * under a tight BLOCKSWAP_VRAM_LIMIT while other memory is paged around it.
 * Run with BLOCKSWAP_VRAM_LIMIT=13M: W, x and y (8 MiB, pinned) plus one of the 4 MiB
 * buffers z and z2 fit, both do not. Filling z and then z2 between pinning and the
 * indirect kernel evicts something; without the pin the least recently used, W, would
 * go, and the kernel would read unmapped memory. */
#include "kit.h"

int main(void)
{
    struct kit k;
    kit_init(&k);
    const uint32_t rows = 512, cols = 2048; /* W: 4 MiB */
    CUdeviceptr W, x, y, z, z2, ptrs;
    CHECK_CU(cuMemAlloc(&W, (size_t)rows * cols * 4));
    CHECK_CU(cuMemAlloc(&x, 2 << 20));
    CHECK_CU(cuMemAlloc(&y, 2 << 20));
    CHECK_CU(cuMemAlloc(&z, 4 << 20));
    CHECK_CU(cuMemAlloc(&z2, 4 << 20));
    CHECK_CU(cuMemAlloc(&ptrs, 64));
    float *hw = malloc((size_t)rows * cols * 4), hx[2048];
    CHECK(hw != NULL);
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        hw[i] = (float)(i % 7) - 3.0f;
    for (uint32_t c = 0; c < cols; c++)
        hx[c] = (float)(c % 5);
    CHECK_CU(cuMemcpyHtoD(W, hw, (size_t)rows * cols * 4));
    CHECK_CU(cuMemcpyHtoD(x, hx, sizeof(hx)));
    CHECK(BS_API_FN(blockswap_is_resident)(W) == 1); /* loaded straight to VRAM */

    for (CUdeviceptr *p = (CUdeviceptr[]){ W, x, y }, *e = p + 3; p < e; p++)
        CHECK(BS_API_FN(blockswap_pin)(*p, 1) == 0);
    CHECK(BS_API_FN(blockswap_is_resident)(W + 100) == 1);
    CHECK(BS_API_FN(blockswap_pin)(ptrs, 1) == -ENOENT); /* small: not managed */

    /* Other memory pages around the pinned set: z and z2 both need VRAM, only one
     * fits beside W/x/y, and W/x/y cannot go. */
    CUfunction fill = kit_fn(&k, "bs_fill_u32");
    uint32_t v = 1;
    uint64_t n = (4 << 20) / 4;
    void *fp[] = { &z, &v, &n }, *fp2[] = { &z2, &v, &n };
    CHECK_CU(kit_launch(fill, NULL, fp));
    CHECK_CU(kit_launch(fill, NULL, fp2));
    struct blockswap_stats st;
    CHECK(BS_API_FN(blockswap_get_stats)(&st) == 0);
    CHECK(st.evictions >= 1); /* the pressure is real: z made room for z2 */
    uint64_t evictions = st.evictions;

    CUdeviceptr hp[3] = { y, W, x };
    CHECK_CU(cuMemcpyHtoD(ptrs, hp, sizeof(hp)));
    CUfunction gi = kit_fn(&k, "bs_gemv_indirect_f32");
    uint32_t r = rows, c = cols;
    void *ip[] = { &ptrs, &r, &c };
    CHECK_CU(kit_launch(gi, NULL, ip));
    float hy[512];
    CHECK_CU(cuMemcpyDtoH(hy, y, sizeof(hy)));
    for (uint32_t i = 0; i < rows; i++) {
        float acc = 0.0f;
        for (uint32_t j = 0; j < cols; j++)
            acc += hw[(size_t)i * cols + j] * hx[j];
        CHECK(hy[i] == acc);
    }

    /* Unpinned, it can be evicted again; its contents survive. */
    CHECK(BS_API_FN(blockswap_pin)(W, 0) == 0);
    CHECK_CU(kit_launch(fill, NULL, fp));
    CHECK_CU(cuMemcpyDtoH(hw, W, 4096));
    CHECK(hw[1] == -2.0f);
    CHECK(BS_API_FN(blockswap_get_stats)(&st) == 0 && st.resident_bytes <= (12u << 20));
    CHECK(st.evictions > evictions);
    printf("pinned indirect gemv ok\n");
    return 0;
}
