/* sim: cuMemGetInfo under blockswap. Run with BLOCKSWAP_VRAM_LIMIT=64M and
 * BLOCKSWAP_HOST_LIMIT=256M; argv[1] is the BLOCKSWAP_MEMINFO mode in force. "paged"
 * reports the VRAM limit plus host backing, so that an application sizing its work by
 * free memory loads a model larger than VRAM; "limit" reports the VRAM limit; "real"
 * the driver's own figures; "any" checks no figure (for the warnings about the limit). */
#include "kit.h"

#define MiB (1024ull * 1024)

int main(int argc, char **argv)
{
    CHECK(argc > 1);
    struct kit k;
    kit_init(&k);
    size_t f0, t0, f1, t1;
    CHECK_CU(cuMemGetInfo(&f0, &t0));
    CUdeviceptr w;
    CHECK_CU(cuMemAlloc(&w, 100 * MiB));
    void *h = calloc(1, 100 * MiB);
    CHECK(h != NULL);
    CHECK_CU(cuMemcpyHtoD(w, h, 100 * MiB)); /* into host backing */
    CHECK_CU(cuMemGetInfo(&f1, &t1));
    printf("before: free %llu total %llu; after loading 100 MiB: free %llu total %llu\n",
           f0 / MiB, t0 / MiB, f1 / MiB, t1 / MiB);
    if (strcmp(argv[1], "paged") == 0) {
        CHECK(t0 == 320 * MiB && t1 == 320 * MiB);
        CHECK(f0 > 319 * MiB && f0 <= 320 * MiB);
        CHECK(f0 - f1 == 100 * MiB); /* the host backing it took */
    } else if (strcmp(argv[1], "any") == 0) {
        /* Whatever the limit: the allocation and the copy into host backing work. */
    } else if (strcmp(argv[1], "limit") == 0) {
        CHECK(t0 == 64 * MiB && f0 > 63 * MiB && f1 == f0); /* nothing resident yet */
    } else {
        /* The simulator's own figures: no VRAM taken for the weight, only the shim's
         * 128 KiB of fingerprint slots, allocated with the first managed allocation. */
        CHECK(t0 == 8192 * MiB && f0 - f1 == 128 * 1024);
    }
    return 0;
}
