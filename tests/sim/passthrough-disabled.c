/* sim: with BLOCKSWAP_DISABLE=1 (or a bad value) the shim is out of the way:
 * lookups return the driver's own functions and nothing is tracked. Run by run.py
 * with the environment under test; argv[1] is "disabled" or "bad-config". */
#include "kit.h"

int main(int argc, char **argv)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    CHECK(h != NULL && argc > 1);
    bool disabled = strcmp(argv[1], "disabled") == 0;
    void *p = dlsym(h, "cuMemAlloc_v2");
    /* Disabled: dlsym itself steps aside. Bad config: wrappers pass through. */
    CHECK(strcmp(kit_owner(p), disabled ? "cuda" : "blockswap") == 0);
    struct kit k;
    kit_init(&k);
    CUdeviceptr d;
    CHECK_CU(cuMemAlloc(&d, 1 << 20));
    CHECK(BS_API_FN(blockswap_enabled)() == 0);
    struct blockswap_alloc_info info;
    CHECK(BS_API_FN(blockswap_find_allocation)(d, &info) == -ENOENT);
    uint32_t v = 0xabcd;
    CHECK_CU(cuMemsetD32(d, v, 4));
    uint32_t back[4];
    CHECK_CU(cuMemcpyDtoH(back, d, sizeof(back)));
    CHECK(back[3] == 0xabcd);
    CHECK_CU(cuMemFree(d));
    printf("pass-through ok\n");
    return 0;
}
