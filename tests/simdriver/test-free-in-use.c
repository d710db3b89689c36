/* Releasing memory that unfinished, unsynchronised work uses is reported (cuMemFree,
 * cuMemUnmap, cuMemFreeAsync on another stream); the same programs that synchronise
 * first are clean. */
#include "simtest.h"

enum { N = 1 << 20 };
static uint64_t count = N, long_ns = 5000000;
static uint32_t v = 3;

static void free_while_running(int sync)
{
    st_setup();
    CUstream s;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUdeviceptr buf = st_alloc(N * 4);
    /* The fill queues behind a long sleep, so it ends well after the host's now. */
    CHECK_CU(st_launch("bs_sleep", s, 1, &long_ns));
    CHECK_CU(st_launch("bs_fill_u32", s, 3, &buf, &v, &count));
    if (sync)
        CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemFree(buf));
}
static void free_racy(void) { free_while_running(0); }
static void free_synced(void) { free_while_running(1); }

static void unmap_while_running(int sync)
{
    st_setup();
    CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}};
    const size_t g = 2 << 20;
    CUdeviceptr va;
    CUmemGenericAllocationHandle h;
    CHECK_CU(cuMemAddressReserve(&va, g, 0, 0, 0));
    CHECK_CU(cuMemCreate(&h, g, &prop, 0));
    CHECK_CU(cuMemMap(va, g, 0, h, 0));
    CUmemAccessDesc acc = {.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0},
                           .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CHECK_CU(cuMemSetAccess(va, g, &acc, 1));
    CUstream s;
    CUevent e;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuEventCreate(&e, 0));
    CHECK_CU(st_launch("bs_sleep", s, 1, &long_ns));
    uint64_t n = g / 4;
    CHECK_CU(st_launch("bs_fill_u32", s, 3, &va, &v, &n));
    CHECK_CU(cuEventRecord(e, s));
    if (sync)
        CHECK_CU(cuEventSynchronize(e)); /* waiting on an event after the last use suffices */
    CHECK_CU(cuMemUnmap(va, g));
    CHECK_CU(cuMemRelease(h));
}
static void unmap_racy(void) { unmap_while_running(0); }
static void unmap_synced(void) { unmap_while_running(1); }

static void free_async_other_stream(int wait)
{
    st_setup();
    CUstream a, b;
    CHECK_CU(cuStreamCreate(&a, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuStreamCreate(&b, CU_STREAM_NON_BLOCKING));
    CUdeviceptr buf;
    CHECK_CU(cuMemAllocAsync(&buf, N * 4, a));
    CHECK_CU(st_launch("bs_fill_u32", a, 3, &buf, &v, &count));
    if (wait) {
        CUevent e;
        CHECK_CU(cuEventCreate(&e, CU_EVENT_DISABLE_TIMING));
        CHECK_CU(cuEventRecord(e, a));
        CHECK_CU(cuStreamWaitEvent(b, e, 0));
    }
    CHECK_CU(cuMemFreeAsync(buf, b));
    CHECK_CU(cuCtxSynchronize());
}
static void free_async_racy(void) { free_async_other_stream(0); }
static void free_async_ordered(void) { free_async_other_stream(1); }

static long long in_use(void (*fn)(void), struct st_child *c)
{
    st_run_child(fn, NULL, c);
    CHECK(c->exit_code == 0);
    return st_report_num(c->report, "in_use_frees");
}

int main(void)
{
    struct st_child c;
    CHECK(in_use(free_racy, &c) == 1);
    CHECK(strstr(c.err, "cudasim: error: cuMemFree_v2 of 0x"));
    CHECK(strstr(c.err, "kernel bs_fill_u32"));
    CHECK(in_use(free_synced, &c) == 0);
    CHECK(in_use(unmap_racy, &c) == 1);
    CHECK(strstr(c.err, "cuMemUnmap of 0x"));
    CHECK(in_use(unmap_synced, &c) == 0);
    CHECK(in_use(free_async_racy, &c) == 1);
    CHECK(strstr(c.err, "cuMemFreeAsync of 0x"));
    CHECK(in_use(free_async_ordered, &c) == 0);
    return 0;
}
