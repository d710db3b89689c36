/* The ordering checker: two streams writing the same bytes with nothing ordering
 * them is a race; an event wait, a host synchronisation or the legacy stream's
 * implicit ordering makes the same program clean; disjoint halves of one buffer
 * never race (byte ranges, not pages). */
#include "simtest.h"

enum { N = 1024 };
static uint64_t count = N;
static uint32_t one = 1, two = 2;

static void two_streams(int how)
{
    st_setup();
    CUstream a, b;
    CHECK_CU(cuStreamCreate(&a, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuStreamCreate(&b, CU_STREAM_NON_BLOCKING));
    CUdeviceptr buf = st_alloc(2 * N * 4), second = buf + N * 4;
    CHECK_CU(st_launch("bs_fill_u32", a, 3, &buf, &one, &count));
    if (how == 1) {
        CUevent e;
        CHECK_CU(cuEventCreate(&e, CU_EVENT_DISABLE_TIMING));
        CHECK_CU(cuEventRecord(e, a));
        CHECK_CU(cuStreamWaitEvent(b, e, 0));
    } else if (how == 2) {
        CHECK_CU(cuStreamSynchronize(a));
    }
    CUdeviceptr target = how == 3 ? second : buf;
    CHECK_CU(st_launch("bs_fill_u32", b, 3, &target, &two, &count));
    CHECK_CU(cuCtxSynchronize());
}

static void racy(void) { two_streams(0); }
static void with_event(void) { two_streams(1); }
static void with_host_sync(void) { two_streams(2); }
static void disjoint_halves(void) { two_streams(3); }

/* Overlapping but not identical ranges, read against write: still a race. */
static void read_write_overlap(void)
{
    st_setup();
    CUstream a, b;
    CHECK_CU(cuStreamCreate(&a, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuStreamCreate(&b, CU_STREAM_NON_BLOCKING));
    CUdeviceptr buf = st_alloc(2 * N * 4), out = st_alloc(8), mid = buf + N * 2;
    uint64_t bytes = N * 4;
    CHECK_CU(st_launch("bs_fill_u32", a, 3, &mid, &one, &count));
    CHECK_CU(st_launch("bs_checksum_u64", b, 3, &out, &buf, &bytes));
    CHECK_CU(cuCtxSynchronize());
}

/* Blocking streams are ordered by the legacy NULL stream; non-blocking are not. */
static void legacy_orders(int nonblocking)
{
    st_setup();
    CUstream a;
    CHECK_CU(cuStreamCreate(&a, nonblocking ? CU_STREAM_NON_BLOCKING : CU_STREAM_DEFAULT));
    CUdeviceptr buf = st_alloc(N * 4);
    CHECK_CU(st_launch("bs_fill_u32", a, 3, &buf, &one, &count));
    CHECK_CU(st_launch("bs_fill_u32", NULL, 3, &buf, &two, &count));
    CHECK_CU(st_launch("bs_fill_u32", a, 3, &buf, &one, &count));
    CHECK_CU(cuCtxSynchronize());
}
static void legacy_blocking(void) { legacy_orders(0); }
static void legacy_nonblocking(void) { legacy_orders(1); }

static long long races(void (*fn)(void), struct st_child *c)
{
    st_run_child(fn, NULL, c);
    CHECK(c->exit_code == 0);
    return st_report_num(c->report, "races");
}

int main(void)
{
    struct st_child c;
    CHECK(races(racy, &c) == 1);
    CHECK(strstr(c.err, "cudasim: error: race on 0x"));
    CHECK(strstr(c.err, "(4096 bytes)"));
    CHECK(strstr(c.err, "kernel bs_fill_u32 (write"));
    CHECK(strstr(c.err, "on stream 0x"));
    CHECK(st_report_num(c.report, "errors") == 1);

    CHECK(races(with_event, &c) == 0);
    CHECK(strstr(c.err, "error") == NULL);
    CHECK(races(with_host_sync, &c) == 0);
    CHECK(races(disjoint_halves, &c) == 0);
    CHECK(races(read_write_overlap, &c) == 1);
    CHECK(strstr(c.err, "(2048 bytes)"));
    CHECK(races(legacy_blocking, &c) == 0);
    CHECK(races(legacy_nonblocking, &c) == 2);
    CHECK(strstr(c.err, "legacy stream"));
    return 0;
}
