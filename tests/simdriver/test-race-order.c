/* The in-use check at releases is order-based (happens-before) by default: memory a
 * kernel used may be unmapped or freed only once a chain CUDA guarantees orders the
 * kernel before the release. Being over in virtual time is not enough: each scenario
 * first lets the host's virtual time pass the kernel's end through an unrelated
 * stream. CUDASIM_RACE=time restores the old rule, under which that passes. */
#include "simtest.h"

#include <stdbool.h>

static uint32_t v = 7;
static uint64_t long_ns = 5000000;

enum order {
    BY_TIME_ONLY,      /* nothing: only virtual time has passed */
    BY_EVENT_SYNC,     /* cuEventSynchronize on an event recorded after the use */
    BY_WAIT_CHAIN,     /* cuStreamWaitEvent into another stream, host syncs that one */
    BY_EVENT_QUERY,    /* cuEventQuery polled until it succeeds */
    BY_STREAM_QUERY,   /* cuStreamQuery polled until it succeeds */
    BY_CTX_SYNC,       /* cuCtxSynchronize */
    BY_LEGACY_COPY,    /* synchronous copy on the legacy stream; blocking user stream */
    NB_LEGACY_COPY,    /* the same with a non-blocking stream: not ordered */
    BY_DESTROYED_SYNC, /* the stream is destroyed; cuCtxSynchronize still orders it */
    NB_DESTROYED,      /* the stream is destroyed; nothing orders its work */
};

static enum order scenario;
static int use_vmm;

/* A short fill on stream s, then the host's virtual time moves far past its end by
 * synchronising with a long sleep on another stream, then the chosen ordering. */
static void run(void)
{
    st_setup();
    CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}};
    const size_t g = 2 << 20;
    CUdeviceptr va;
    CUmemGenericAllocationHandle h = 0;
    if (use_vmm) {
        CHECK_CU(cuMemAddressReserve(&va, g, 0, 0, 0));
        CHECK_CU(cuMemCreate(&h, g, &prop, 0));
        CHECK_CU(cuMemMap(va, g, 0, h, 0));
        CUmemAccessDesc acc = {.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0},
                               .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
        CHECK_CU(cuMemSetAccess(va, g, &acc, 1));
    } else {
        va = st_alloc(g);
    }
    CUstream s, other;
    bool blocking = scenario == BY_LEGACY_COPY;
    CHECK_CU(cuStreamCreate(&s, blocking ? CU_STREAM_DEFAULT : CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuStreamCreate(&other, CU_STREAM_NON_BLOCKING));
    CUevent e;
    CHECK_CU(cuEventCreate(&e, CU_EVENT_DISABLE_TIMING));

    uint64_t n = g / 4;
    CHECK_CU(st_launch("bs_fill_u32", s, 3, &va, &v, &n));
    CHECK_CU(cuEventRecord(e, s));
    if (scenario == BY_DESTROYED_SYNC || scenario == NB_DESTROYED)
        CHECK_CU(cuStreamDestroy(s));

    /* Virtual time passes the fill's end; nothing here orders the fill. */
    CHECK_CU(st_launch("bs_sleep", other, 1, &long_ns));
    CHECK_CU(cuStreamSynchronize(other));

    static uint32_t host[256];
    CUdeviceptr scratch = st_alloc(sizeof(host));
    switch (scenario) {
    case BY_TIME_ONLY:
    case NB_DESTROYED:
        break;
    case BY_EVENT_SYNC:
        CHECK_CU(cuEventSynchronize(e));
        break;
    case BY_WAIT_CHAIN: {
        CUstream third;
        CHECK_CU(cuStreamCreate(&third, CU_STREAM_NON_BLOCKING));
        CHECK_CU(cuStreamWaitEvent(other, e, 0));
        CUevent e2;
        CHECK_CU(cuEventCreate(&e2, CU_EVENT_DISABLE_TIMING));
        CHECK_CU(cuEventRecord(e2, other));
        CHECK_CU(cuStreamWaitEvent(third, e2, 0));
        CHECK_CU(cuStreamSynchronize(third));
        break;
    }
    case BY_EVENT_QUERY: {
        CUresult r;
        while ((r = cuEventQuery(e)) == CUDA_ERROR_NOT_READY)
            ;
        CHECK_CU(r);
        break;
    }
    case BY_STREAM_QUERY: {
        CUresult r;
        while ((r = cuStreamQuery(s)) == CUDA_ERROR_NOT_READY)
            ;
        CHECK_CU(r);
        break;
    }
    case BY_CTX_SYNC:
    case BY_DESTROYED_SYNC:
        CHECK_CU(cuCtxSynchronize());
        break;
    case BY_LEGACY_COPY:
    case NB_LEGACY_COPY:
        CHECK_CU(cuMemcpyHtoD(scratch, host, sizeof(host)));
        break;
    }
    if (use_vmm) {
        CHECK_CU(cuMemUnmap(va, g));
        CHECK_CU(cuMemRelease(h));
    } else {
        CHECK_CU(cuMemFree(va));
    }
}

static long long in_use(enum order o, int vmm, const char *race, struct st_child *c)
{
    char kv[64];
    snprintf(kv, sizeof(kv), "CUDASIM_RACE=%s", race);
    const char *const env[] = {kv, NULL};
    scenario = o;
    use_vmm = vmm;
    st_run_child(run, env, c);
    CHECK(c->exit_code == 0);
    return st_report_num(c->report, "in_use_frees");
}

int main(void)
{
    struct st_child c;
    for (int vmm = 0; vmm <= 1; vmm++) {
        /* Ordered by nothing but virtual time: an error by default, not under time. */
        CHECK(in_use(BY_TIME_ONLY, vmm, "order", &c) == 1);
        CHECK(strstr(c.err, vmm ? "cudasim: error: cuMemUnmap of 0x" : "cudasim: error: cuMemFree_v2 of 0x"));
        CHECK(strstr(c.err, "kernel bs_fill_u32"));
        CHECK(strstr(c.err, "is not ordered before the release"));
        CHECK(in_use(BY_TIME_ONLY, vmm, "time", &c) == 0);
        CHECK(in_use(NB_DESTROYED, vmm, "order", &c) == 1);
        CHECK(in_use(NB_LEGACY_COPY, vmm, "order", &c) == 1);

        /* Each chain CUDA guarantees orders it. */
        const enum order ok[] = {BY_EVENT_SYNC, BY_WAIT_CHAIN, BY_EVENT_QUERY, BY_STREAM_QUERY,
                                 BY_CTX_SYNC, BY_LEGACY_COPY, BY_DESTROYED_SYNC};
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
            if (in_use(ok[i], vmm, "order", &c) != 0) {
                fprintf(stderr, "scenario %d (vmm %d) reported:\n%s\n", (int)ok[i], vmm, c.err);
                CHECK(0);
            }
        }
    }

    /* A bad value warns and keeps the default. */
    CHECK(in_use(BY_TIME_ONLY, 1, "sometimes", &c) == 1);
    CHECK(strstr(c.err, "cudasim: warning: CUDASIM_RACE=\"sometimes\" is not valid: expected order or time"));
    return 0;
}
