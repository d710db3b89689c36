/* Unit: threads that launch a function for the first time at once each ask the driver
 * for its layout; one layout is published, the others are freed (a leak under ASan
 * before), and every later launch finds it without asking the driver again. */
#include "bs.h"
#include "cutest.h"

#include <pthread.h>

#define THREADS 4

static const uint64_t A = 0x7e0000000000ull;
static pthread_barrier_t all_inside;
static int queries; /* calls for parameter 0 */

/* One pointer parameter at offset 0. Every thread's first question waits until all
 * threads are inside the layout query, so they all miss the cache together. */
static CUresult fake_param_info(CUfunction f, size_t i, size_t *off, size_t *size)
{
    (void)f;
    if (i > 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (__atomic_fetch_add(&queries, 1, __ATOMIC_SEQ_CST) < THREADS)
        pthread_barrier_wait(&all_inside);
    *off = 0;
    *size = 8;
    return CUDA_SUCCESS;
}

static void *launcher(void *arg)
{
    (void)arg;
    uint64_t ptr = A + 16;
    void *kp[] = { &ptr };
    for (int round = 0; round < 3; round++) {
        struct bs_launch_set set = { 0 };
        CHECK(bs_launch_scan((CUfunction)0xf00d, kp, NULL, 32768, &set) == 0);
        CHECK(set.n == 1 && set.bases[0] == A);
    }
    return NULL;
}

int main(void)
{
    bs_log_set_level(BS_LOG_ERROR);
    struct bs_alloc_rec r = { .base = A, .size = 4096, .api = 1 };
    CHECK(bs_alloc_map_insert(&r) == 0);
    bs_drv.cuFuncGetParamInfo = fake_param_info;
    bs_drv.cuKernelGetParamInfo = NULL;
    CHECK(pthread_barrier_init(&all_inside, NULL, THREADS) == 0);

    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, launcher, NULL) == 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    /* Each thread asked once, together; the rounds after found the published layout. */
    CHECK(queries == THREADS);
    launcher(NULL);
    CHECK(queries == THREADS);
    pthread_barrier_destroy(&all_inside);
    return 0;
}
