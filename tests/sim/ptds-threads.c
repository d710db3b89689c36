/* sim: two threads each work on their own per-thread default stream (built with
 * CUDA_API_PER_THREAD_DEFAULT_STREAM, so stream 0 is that thread's stream and the
 * _ptsz entry points are used) on managed weights, under a limit that makes the shim
 * evict one thread's memory while serving the other. No other thread can record on a
 * per-thread stream, so eviction must wait on events the owner recorded; the
 * simulator's ordering checks (run with --report) prove it did. Prints each thread's
 * checksum after both are done. */
#include "kit.h"

#include <pthread.h>

#define MiB (1024ull * 1024)
#define NW 6

static struct kit k;
static uint64_t result[2];

static void *work(void *arg)
{
    int id = (int)(intptr_t)arg;
    CHECK_CU(cuCtxSetCurrent(k.ctx));
    CUfunction gemv = kit_fn(&k, "bs_gemv_f32"), tanh_f = kit_fn(&k, "bs_tanh_f32");
    CUfunction sum = kit_fn(&k, "bs_checksum_u64");
    CUdeviceptr w[NW], x, y, out;
    float *h = malloc(4 * MiB);
    CHECK(h != NULL);
    for (int i = 0; i < NW; i++) {
        CHECK_CU(cuMemAlloc(&w[i], 4 * MiB));
        for (size_t j = 0; j < MiB; j++)
            h[j] = (float)(((uint32_t)(id * 100 + i) * 2654435761u + (uint32_t)j * 40503u) % 1000) / 1000.0f - 0.5f;
        CHECK_CU(cuMemcpyHtoDAsync(w[i], h, 4 * MiB, 0));
        CHECK_CU(cuStreamSynchronize(0));
    }
    CHECK_CU(cuMemAlloc(&x, 4096));
    CHECK_CU(cuMemAlloc(&y, 4096));
    CHECK_CU(cuMemAlloc(&out, 8));
    CHECK_CU(cuMemsetD32Async(x, 0x3c23d70a, 1024, 0));
    uint32_t rows = 1024, cols = 1024;
    uint64_t n = 1024;
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < NW; i++) {
            void *gp[] = { &y, &w[i], &x, &rows, &cols };
            CHECK_CU(kit_launch(gemv, 0, gp));
            void *tp[] = { &y, &n };
            CHECK_CU(kit_launch(tanh_f, 0, tp));
            CUdeviceptr t = x; x = y; y = t;
        }
    uint64_t bytes = 4096;
    void *cp[] = { &out, &x, &bytes };
    CHECK_CU(kit_launch(sum, 0, cp));
    CHECK_CU(cuMemcpyDtoHAsync(&result[id], out, 8, 0));
    CHECK_CU(cuStreamSynchronize(0));
    for (int i = 0; i < NW; i++)
        CHECK_CU(cuMemFreeAsync(w[i], 0));
    CHECK_CU(cuStreamSynchronize(0));
    free(h);
    return NULL;
}

int main(void)
{
    kit_init(&k);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, work, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("thread 0 0x%016llx thread 1 0x%016llx\n", (unsigned long long)result[0],
           (unsigned long long)result[1]);
    return 0;
}
