/* sim: hooks called from a thread with no current context return the driver's
 * error and do not crash; threads launching concurrently each see their own
 * launch set; the allocation map stays consistent under concurrent alloc/free. */
#include "kit.h"

#include <pthread.h>

static struct kit k;
static CUdeviceptr shared_buf;

static void *no_context(void *arg)
{
    CUdeviceptr p;
    CUresult r = cuMemAlloc(&p, 4096);
    *(CUresult *)arg = r;
    return NULL;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    CHECK_CU(cuCtxSetCurrent(k.ctx));
    CUfunction fill = kit_fn(&k, "bs_fill_u32");
    CUstream s;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    for (int i = 0; i < 200; i++) {
        CUdeviceptr mine;
        CHECK_CU(cuMemAllocAsync(&mine, 4096 * (size_t)(1 + id), s));
        uint32_t v = (uint32_t)(id * 1000 + i);
        uint64_t n = 1024;
        void *p[] = { &mine, &v, &n };
        CHECK_CU(kit_launch(fill, s, p));
        uint64_t set[4];
        int got = kit_launch_set(set, 4);
        if (got != 1 || set[0] != mine) {
            fprintf(stderr, "thread %d: launch set %d\n", id, got);
            exit(1);
        }
        uint32_t back;
        CHECK_CU(cuMemcpyDtoHAsync(&back, mine + 4092, 4, s));
        CHECK_CU(cuStreamSynchronize(s));
        CHECK(back == v);
        CHECK_CU(cuMemFreeAsync(mine, s));
    }
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuStreamDestroy(s));
    return NULL;
}

int main(void)
{
    kit_init(&k);
    CHECK_CU(cuMemAlloc(&shared_buf, 1 << 20));
    pthread_t t;
    CUresult r = CUDA_SUCCESS;
    CHECK(pthread_create(&t, NULL, no_context, &r) == 0);
    pthread_join(t, NULL);
    CHECK(r == CUDA_ERROR_INVALID_CONTEXT);

    pthread_t w[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&w[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(w[i], NULL);
    struct blockswap_stats st;
    CHECK(BS_API_FN(blockswap_get_stats)(&st) == 0);
    CHECK(st.live_allocations == 1 && st.allocs == 801 && st.frees == 800);
    return 0;
}
