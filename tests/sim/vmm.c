/* sim: the application's own VMM mappings (PyTorch expandable segments) pass
 * through, are counted, and are found by launches; unmapping forgets them. */
#include "kit.h"

int main(void)
{
    struct kit k;
    kit_init(&k);
    CUmemAllocationProp prop = { .type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                 .location = { .type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0 } };
    size_t gran;
    CHECK_CU(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    CUdeviceptr va;
    CHECK_CU(cuMemAddressReserve(&va, 4 * gran, 0, 0, 0));
    CUmemGenericAllocationHandle h;
    CHECK_CU(cuMemCreate(&h, 2 * gran, &prop, 0));
    CHECK_CU(cuMemMap(va + gran, 2 * gran, 0, h, 0));
    CUmemAccessDesc acc = { .location = prop.location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
    CHECK_CU(cuMemSetAccess(va + gran, 2 * gran, &acc, 1));

    struct blockswap_stats st;
    CHECK(BS_API_FN(blockswap_get_stats)(&st) == 0 && st.vmm_mapped_bytes == 2 * gran);
    CUfunction fill = kit_fn(&k, "bs_fill_u32");
    CUdeviceptr inside = va + gran + 4096;
    uint32_t v = 9;
    uint64_t n = 1024;
    void *p[] = { &inside, &v, &n };
    CHECK_CU(kit_launch(fill, NULL, p));
    uint64_t set[4];
    CHECK(kit_launch_set(set, 4) == 1 && set[0] == va + gran);
    struct blockswap_alloc_info info;
    CHECK(BS_API_FN(blockswap_find_allocation)(inside, &info) == 0);
    CHECK(info.api == BLOCKSWAP_API_VMM_MAP && info.size == 2 * gran);

    CHECK_CU(cuCtxSynchronize());
    CHECK_CU(cuMemUnmap(va + gran, 2 * gran));
    CHECK(BS_API_FN(blockswap_get_stats)(&st) == 0 && st.vmm_mapped_bytes == 0);
    CHECK(BS_API_FN(blockswap_find_allocation)(inside, &info) == -ENOENT);
    CHECK_CU(cuMemRelease(h));
    CHECK_CU(cuMemAddressFree(va, 4 * gran));
    CHECK(kit_calls("cuMemCreate") == 1 && kit_calls("cuMemMap") == 1);
    return 0;
}
