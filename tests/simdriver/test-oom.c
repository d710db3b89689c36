/* CUDASIM_VRAM (64M here) is one capacity for cuMemAlloc and cuMemCreate together:
 * allocations past it fail with CUDA_ERROR_OUT_OF_MEMORY, and freeing makes room. */
#include "simtest.h"

int main(void)
{
    st_setup();
    const size_t M = 1 << 20;
    size_t fr, tot;
    CHECK_CU(cuMemGetInfo(&fr, &tot));
    CHECK_EQ_U64(tot, 64 * M);
    CHECK_EQ_U64(fr, 64 * M);

    CUdeviceptr a;
    CHECK_CU(cuMemAlloc(&a, 40 * M));
    CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}};
    CUmemGenericAllocationHandle h, h2;
    CHECK(cuMemCreate(&h, 32 * M, &prop, 0) == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK_CU(cuMemCreate(&h, 16 * M, &prop, 0));
    CHECK_CU(cuMemGetInfo(&fr, &tot));
    CHECK_EQ_U64(fr, 8 * M);
    CUdeviceptr b;
    CHECK(cuMemAlloc(&b, 16 * M) == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(cuMemAllocAsync(&b, 16 * M, NULL) == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(cuMemCreate(&h2, 16 * M, &prop, 0) == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK_CU(cuMemFree(a));
    CHECK_CU(cuMemAlloc(&b, 16 * M));
    CHECK_CU(cuMemCreate(&h2, 16 * M, &prop, 0));
    CHECK_CU(cuMemRelease(h));
    CHECK_CU(cuMemRelease(h2));
    CHECK_CU(cuMemFree(b));
    CHECK_CU(cuMemGetInfo(&fr, &tot));
    CHECK_EQ_U64(fr, 64 * M);
    /* Pinned host memory is not device memory. */
    void *p;
    CHECK_CU(cuMemAllocHost(&p, 100 * M));
    CHECK_CU(cuMemGetInfo(&fr, &tot));
    CHECK_EQ_U64(fr, 64 * M);
    CHECK_CU(cuMemFreeHost(p));
    return 0;
}
