/* sim: a program linked against libcuda reaches the shim by direct symbol calls. */
#include "kit.h"

int main(void)
{
    struct kit k;
    kit_init(&k);
    CHECK(strcmp(kit_owner((void *)cuMemAlloc_v2), "blockswap") == 0);
    CHECK(strcmp(kit_owner((void *)cuInit), "cuda") == 0); /* not hooked */
    int64_t before = kit_calls("cuMemAlloc_v2");
    CUdeviceptr p;
    CHECK_CU(cuMemAlloc(&p, 1 << 20));
    CHECK(kit_calls("cuMemAlloc_v2") == before + 1);
    struct blockswap_alloc_info info;
    CHECK(BS_API_FN(blockswap_find_allocation)(p + 4096, &info) == 0);
    CHECK(info.base == p && info.size == 1 << 20 && info.api == BLOCKSWAP_API_MEM_ALLOC);
    CHECK_CU(cuMemFree(p));
    CHECK(BS_API_FN(blockswap_find_allocation)(p, &info) == -ENOENT);
    CHECK(kit_calls("cuMemFree_v2") >= 1);
    CHECK(kit_calls("cuNotAHook") == -1);
    return 0;
}
