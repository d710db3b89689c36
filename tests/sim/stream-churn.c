/* sim: an application that creates a stream, uses weights on it and destroys it while
 * its work is still queued, 100 times, under a VRAM limit that evicts those weights
 * again and again (PyTorch code that makes a stream per task does this). Evictions must
 * still wait for the dead streams' work (the race checker says whether they did: the
 * checksum kernels are short and over in virtual time long before their weight is
 * unmapped, so only its order-based check, the default, sees a missing wait),
 * without synchronising the whole context, and the 64 stream slots must not run out
 * (a weight used on a stream without a slot is pinned, and the limit is then hit).
 * Prints the checksum of all results. */
#include "kit.h"

#define WEIGHTS 8
#define ROUNDS 100
#define MiB (1u << 20)

int main(void)
{
    struct kit k;
    kit_init(&k);
    CUfunction sum = kit_fn(&k, "bs_checksum_u64");
    static uint32_t host[4 * MiB / 4];
    CUdeviceptr w[WEIGHTS], out;
    for (int i = 0; i < WEIGHTS; i++) {
        for (size_t j = 0; j < sizeof(host) / 4; j++)
            host[j] = (uint32_t)(j * 2654435761u + (uint32_t)i);
        CHECK_CU(cuMemAlloc(&w[i], sizeof(host)));
        CHECK_CU(cuMemcpyHtoD(w[i], host, sizeof(host)));
    }
    CHECK_CU(cuMemAlloc(&out, ROUNDS * 8));
    for (int r = 0; r < ROUNDS; r++) {
        CUstream s;
        CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
        CUdeviceptr o = out + (CUdeviceptr)r * 8, data = w[(r * 3) % WEIGHTS];
        uint64_t bytes = sizeof(host);
        void *p[] = { &o, &data, &bytes };
        CHECK_CU(kit_launch(sum, s, p));
        CHECK_CU(cuStreamDestroy(s)); /* its kernel may still be queued */
    }
    CHECK_CU(cuCtxSynchronize());
    uint64_t res[ROUNDS], h = 1469598103934665603ull;
    CHECK_CU(cuMemcpyDtoH(res, out, sizeof(res)));
    for (int r = 0; r < ROUNDS; r++)
        h = (h ^ res[r]) * 1099511628211ull;
    printf("checksum 0x%016llx\n", (unsigned long long)h);
    return 0;
}
