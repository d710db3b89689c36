/* The virtual timeline: an H2D copy on one stream overlaps a bs_sleep kernel on
 * another (different engines, no ordering), and the two serialise on one stream;
 * cuEventElapsedTime around a copy is bytes / CUDASIM_PCIE_GBPS; a polling loop on
 * cuStreamQuery terminates. */
#include <math.h>

#include "simtest.h"

enum { BYTES = 25 * 1000 * 1000 }; /* 1 ms at 25 GB/s */
static uint64_t sleep_ns = 2000000;   /* 2 ms */

static void copy_and_sleep(int same_stream)
{
    st_setup();
    CUstream a, b;
    CHECK_CU(cuStreamCreate(&a, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuStreamCreate(&b, CU_STREAM_NON_BLOCKING));
    void *host;
    CHECK_CU(cuMemAllocHost(&host, BYTES));
    CUdeviceptr d = st_alloc(BYTES);
    CHECK_CU(cuMemcpyHtoDAsync(d, host, BYTES, a));
    CHECK_CU(st_launch("bs_sleep", same_stream ? a : b, 1, &sleep_ns));
    CHECK_CU(cuCtxSynchronize());
}
static void overlap(void) { copy_and_sleep(0); }
static void serial(void) { copy_and_sleep(1); }

static void elapsed(void)
{
    st_setup();
    CUstream s;
    CUevent e0, e1;
    CHECK_CU(cuStreamCreate(&s, 0));
    CHECK_CU(cuEventCreate(&e0, 0));
    CHECK_CU(cuEventCreate(&e1, 0));
    void *host;
    CHECK_CU(cuMemAllocHost(&host, BYTES));
    CUdeviceptr d = st_alloc(BYTES);
    CHECK_CU(cuEventRecord(e0, s));
    CHECK_CU(cuMemcpyHtoDAsync(d, host, BYTES, s));
    CHECK_CU(cuEventRecord(e1, s));
    float ms = -1;
    CHECK(cuEventElapsedTime(&ms, e0, e1) == CUDA_ERROR_NOT_READY); /* not complete yet */
    /* Polling terminates: the first query that finds work pending moves host time. */
    int polls = 0;
    while (cuStreamQuery(s) == CUDA_ERROR_NOT_READY)
        CHECK(++polls < 3);
    CHECK(polls == 1);
    CHECK(cuEventQuery(e1) == CUDA_SUCCESS);
    CHECK_CU(cuEventElapsedTime(&ms, e0, e1));
    float ms2 = -1;
    CHECK_CU(cuEventElapsedTime_v2(&ms2, e0, e1));
    CHECK(ms == ms2);
    const char *gbps = getenv("CUDASIM_PCIE_GBPS");
    double want = BYTES / (gbps ? atof(gbps) : 25.0) / 1e6;
    fprintf(stderr, "ELAPSED=%f WANT=%f\n", ms, want);
    CHECK(fabs(ms - want) < 1e-3 * want);
}

int main(void)
{
    struct st_child c;
    const double copy_ns = BYTES / 25.0;
    st_run_child(overlap, NULL, &c);
    CHECK(c.exit_code == 0);
    long long t_overlap = st_report_num(c.report, "virtual_time_ns");
    CHECK(t_overlap > 0 && t_overlap < copy_ns + sleep_ns);
    CHECK(st_report_num(c.report, "h2d_busy_ns") == (long long)copy_ns);
    CHECK(st_report_num(c.report, "h2d_bytes") == BYTES);

    st_run_child(serial, NULL, &c);
    CHECK(c.exit_code == 0);
    long long t_serial = st_report_num(c.report, "virtual_time_ns");
    CHECK(t_serial >= copy_ns + sleep_ns);
    fprintf(stderr, "overlap %lld ns, serial %lld ns\n", t_overlap, t_serial);

    st_run_child(elapsed, NULL, &c);
    CHECK(c.exit_code == 0);
    const char *const fast[] = {"CUDASIM_PCIE_GBPS=50", NULL};
    st_run_child(elapsed, fast, &c);
    CHECK(c.exit_code == 0);
    CHECK(strstr(c.err, "ELAPSED=0.5"));
    return 0;
}
