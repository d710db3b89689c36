/* VMM: content written through one mapping survives cuMemUnmap and reappears when
 * the same physical handle is mapped again at another address; granularity and
 * size/alignment errors are reported as CUDA_ERROR_INVALID_VALUE. */
#include "simtest.h"

int main(void)
{
    st_setup();
    CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}};
    size_t gran = 0;
    CHECK_CU(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    CHECK_EQ_U64(gran, 2 << 20);

    CUdeviceptr va;
    CHECK_CU(cuMemAddressReserve(&va, 4 * gran, 0, 0, 0));
    CHECK(va % gran == 0);
    CHECK(cuMemAddressReserve(&va, gran + 4096, 0, 0, 0) == CUDA_ERROR_INVALID_VALUE);

    CUmemGenericAllocationHandle h;
    CHECK(cuMemCreate(&h, gran / 2, &prop, 0) == CUDA_ERROR_INVALID_VALUE);
    CHECK_CU(cuMemCreate(&h, gran, &prop, 0));
    CHECK(cuMemMap(va + 4096, gran, 0, h, 0) == CUDA_ERROR_INVALID_VALUE);
    CHECK(cuMemMap(va, 2 * gran, 0, h, 0) == CUDA_ERROR_INVALID_VALUE);
    CHECK_CU(cuMemMap(va, gran, 0, h, 0));
    CUmemAccessDesc acc = {.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0},
                           .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CHECK_CU(cuMemSetAccess(va, gran, &acc, 1));

    uint32_t v = 0x12345678;
    uint64_t n = gran / 4;
    CHECK_CU(st_launch("bs_fill_u32", NULL, 3, &va, &v, &n));
    CHECK_CU(cuCtxSynchronize());

    CUdeviceptr base;
    size_t size;
    CHECK_CU(cuMemGetAddressRange(&base, &size, va + 100));
    CHECK(base == va && size == gran);
    CHECK_CU(cuPointerGetAttribute(&base, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, va + 100));
    CHECK(base == va);

    CHECK_CU(cuMemUnmap(va, gran));
    /* Map again elsewhere in the reservation: the data is still there. */
    CUdeviceptr other = va + 2 * gran;
    CHECK_CU(cuMemMap(other, gran, 0, h, 0));
    CHECK_CU(cuMemSetAccess(other, gran, &acc, 1));
    uint32_t *host = malloc(gran);
    CHECK_CU(cuMemcpyDtoH(host, other, gran));
    for (size_t i = 0; i < n; i++)
        CHECK(host[i] == 0x12345678);

    /* And back at the original address, with the handle released while mapped
     * (legal: the memory lives until its last unmap). */
    CHECK_CU(cuMemMap(va, gran, 0, h, 0));
    CHECK_CU(cuMemSetAccess(va, gran, &acc, 1));
    CHECK_CU(cuMemRelease(h));
    memset(host, 0, gran);
    CHECK_CU(cuMemcpyDtoH(host, va + gran - 4096, 4096));
    CHECK(host[0] == 0x12345678 && host[1023] == 0x12345678);
    CHECK(cuMemUnmap(va, gran / 2) == CUDA_ERROR_INVALID_VALUE);
    CHECK_CU(cuMemUnmap(va, gran));
    CHECK_CU(cuMemUnmap(other, gran));
    CHECK_CU(cuMemAddressFree(va, 4 * gran));
    size_t fr, tot;
    CHECK_CU(cuMemGetInfo(&fr, &tot));
    CHECK_EQ_U64(fr, tot); /* the physical memory went back with its last mapping */
    free(host);
    return 0;
}
