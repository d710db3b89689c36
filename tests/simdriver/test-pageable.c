/* Host memory that is not pinned, as the driver treats it.
 *
 * timing: a host-to-device copy from pageable memory (malloc) runs at
 * CUDASIM_PAGEABLE_GBPS, slower than one from pinned memory by the ratio of the two
 * bandwidths, and cuMemcpyHtoDAsync from it holds the calling thread until the copy
 * has run; from pinned memory it returns at once. A device-to-pageable copy runs at
 * the pageable bandwidth too. The wait is time, not ordering: freeing the copy's
 * destination without synchronising is still reported as an in-use free. The report
 * counts the pageable bytes.
 *
 * registered: memory registered with cuMemHostRegister copies like pinned memory
 * (bandwidth, no hold) and is counted in pinned_host_bytes now and at peak; after
 * cuMemHostUnregister it is pageable again. The driver's error codes for bad flags,
 * overlaps, device memory, unknown and interior pointers. The live counters that
 * cuGetProcAddress("cudasimGetMemCounters") gives agree with the report. */
#include "simtest.h"

enum { BYTES = 25 * 1000 * 1000 }; /* 1 ms at 25 GB/s */

struct timing {
    double copy_ms; /* the copy on its stream, between events */
    double hold_ms; /* how far the calling thread's clock moved during the call */
};

/* An event recorded on an empty stream carries the calling thread's present, so two
 * of them around the call measure the host's wait. */
static struct timing copy_h2d(CUdeviceptr d, void *host, size_t n)
{
    CUstream s, q;
    CUevent e0, e1, h0, h1;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuStreamCreate(&q, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuEventCreate(&e0, 0));
    CHECK_CU(cuEventCreate(&e1, 0));
    CHECK_CU(cuEventCreate(&h0, 0));
    CHECK_CU(cuEventCreate(&h1, 0));
    CHECK_CU(cuEventRecord(e0, s));
    CHECK_CU(cuEventRecord(h0, q));
    CHECK_CU(cuMemcpyHtoDAsync(d, host, n, s));
    CHECK_CU(cuEventRecord(h1, q));
    CHECK_CU(cuEventRecord(e1, s));
    CHECK_CU(cuCtxSynchronize());
    float c = 0, h = 0;
    CHECK_CU(cuEventElapsedTime(&c, e0, e1));
    CHECK_CU(cuEventElapsedTime(&h, h0, h1));
    return (struct timing){c, h};
}

static double copy_d2h_ms(void *host, CUdeviceptr d, size_t n)
{
    CUstream s;
    CUevent e0, e1;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuEventCreate(&e0, 0));
    CHECK_CU(cuEventCreate(&e1, 0));
    CHECK_CU(cuEventRecord(e0, s));
    CHECK_CU(cuMemcpyDtoHAsync(host, d, n, s));
    CHECK_CU(cuEventRecord(e1, s));
    CHECK_CU(cuCtxSynchronize());
    float c = 0;
    CHECK_CU(cuEventElapsedTime(&c, e0, e1));
    return c;
}

static int near(double got, double want)
{
    fprintf(stderr, "got %.6f ms, want %.6f ms\n", got, want);
    return got > want * 0.999 && got < want * 1.001;
}

static double env_gbps(const char *name, double def)
{
    const char *v = getenv(name);
    return v ? atof(v) : def;
}

/* ---- timing ------------------------------------------------------------------------ */

static void timing(void)
{
    st_setup();
    double pcie = env_gbps("CUDASIM_PCIE_GBPS", 25), pageable = env_gbps("CUDASIM_PAGEABLE_GBPS", 10);
    double pinned_ms = BYTES / pcie / 1e6, pageable_ms = BYTES / pageable / 1e6;
    CUdeviceptr d = st_alloc(BYTES);
    void *pin, *heap = malloc(BYTES);
    CHECK(heap);
    memset(heap, 1, BYTES);
    CHECK_CU(cuMemAllocHost(&pin, BYTES));

    struct timing t = copy_h2d(d, pin, BYTES);
    CHECK(near(t.copy_ms, pinned_ms));
    CHECK(t.hold_ms == 0);

    t = copy_h2d(d, heap, BYTES);
    CHECK(near(t.copy_ms, pageable_ms));
    CHECK(near(t.hold_ms, pageable_ms)); /* the call returned when the copy had run */

    CHECK(near(copy_d2h_ms(pin, d, BYTES), pinned_ms));
    CHECK(near(copy_d2h_ms(heap, d, BYTES), pageable_ms));

    /* Held for the time, not synchronised: the release below is unordered. */
    CUstream s;
    CUdeviceptr d2 = st_alloc(BYTES);
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuMemcpyHtoDAsync(d2, heap, BYTES, s));
    CHECK_CU(cuMemFree(d2));
    CHECK_CU(cuStreamSynchronize(s));
}

/* ---- registered -------------------------------------------------------------------- */

static void registered(void)
{
    st_setup();
    double pcie = env_gbps("CUDASIM_PCIE_GBPS", 25), pageable = env_gbps("CUDASIM_PAGEABLE_GBPS", 10);
    CUdeviceptr d = st_alloc(BYTES);
    unsigned char *heap = malloc(BYTES + 8192);
    CHECK(heap);
    memset(heap, 2, BYTES + 8192);

    CUresult (*counters)(uint64_t *, unsigned);
    uint64_t c[5] = {0};
    CHECK_CU(cuGetProcAddress("cudasimGetMemCounters", (void **)&counters, 12000, 0, NULL));
    CHECK_CU(counters(c, 5));
    CHECK(c[0] >= BYTES && c[1] == c[0] && c[2] == 0 && c[3] == 0 && c[4] == 0);
    CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                .location = {CU_MEM_LOCATION_TYPE_DEVICE, 0}};
    CUmemGenericAllocationHandle h;
    CHECK_CU(cuMemCreate(&h, 2 << 20, &prop, 0));
    CHECK_CU(counters(c, 5));
    CHECK(c[4] == 2 << 20 && c[0] >= BYTES + (2 << 20));
    CHECK_CU(cuMemRelease(h));
    CHECK_CU(counters(c, 5));
    CHECK(c[4] == 0);

    CHECK_CU(cuMemHostRegister(heap, BYTES, 0));
    CHECK_CU(counters(c, 4));
    CHECK(c[2] == BYTES && c[3] == BYTES);
    struct timing t = copy_h2d(d, heap, BYTES);
    CHECK(near(t.copy_ms, BYTES / pcie / 1e6));
    CHECK(t.hold_ms == 0);
    CHECK(near(copy_d2h_ms(heap, d, BYTES), BYTES / pcie / 1e6));

    /* Errors, as NVIDIA's driver gives them. */
    CHECK(cuMemHostRegister(heap + 4096, 4096, 0) == CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
    CHECK(cuMemHostRegister(heap + BYTES - 1, 2, 0) == CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
    CHECK(cuMemHostRegister(heap + BYTES, 16, 0x100) == CUDA_ERROR_INVALID_VALUE);
    CHECK(cuMemHostRegister((void *)(uintptr_t)d, 4096, 0) == CUDA_ERROR_INVALID_VALUE);
    CHECK(cuMemHostUnregister(heap + 4096) == CUDA_ERROR_INVALID_VALUE); /* inside a registration */
    CHECK(cuMemHostUnregister(heap + BYTES) == CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
    void *pin;
    CHECK_CU(cuMemHostAlloc(&pin, 4096, 0));
    CHECK(cuMemHostRegister(pin, 4096, 0) == CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
    CHECK(cuMemHostUnregister(pin) == CUDA_ERROR_INVALID_VALUE); /* cuMemHostAlloc's */
    CHECK_CU(cuMemFreeHost(pin));
    /* Byte ranges: the next bytes, on the same page, register on their own. */
    CHECK_CU(cuMemHostRegister(heap + BYTES, 100, CU_MEMHOSTREGISTER_PORTABLE));
    CHECK_CU(cuMemHostUnregister(heap + BYTES));

    CHECK_CU(cuMemHostUnregister(heap));
    CHECK_CU(counters(c, 4));
    CHECK(c[2] == 0 && c[3] == BYTES + 4096);
    t = copy_h2d(d, heap, BYTES);
    CHECK(near(t.copy_ms, BYTES / pageable / 1e6)); /* pageable again */
    CHECK(near(t.hold_ms, BYTES / pageable / 1e6));

    /* Still registered at exit: the report's present. */
    CHECK_CU(cuMemHostRegister(heap, 8192, CU_MEMHOSTREGISTER_DEVICEMAP));
}

int main(int argc, char **argv)
{
    struct st_child c;
    const char *const base[] = {"CUDASIM_COSTS=0", NULL};
    const char *const ratio5[] = {"CUDASIM_COSTS=0", "CUDASIM_PAGEABLE_GBPS=5", NULL};
    CHECK(argc == 2);
    if (strcmp(argv[1], "timing") == 0) {
        st_run_child(timing, base, &c);
        CHECK(c.exit_code == 0);
        CHECK(st_report_num(c.report, "pageable_h2d_bytes") == 2 * BYTES);
        CHECK(st_report_num(c.report, "pageable_d2h_bytes") == BYTES);
        CHECK(st_report_num(c.report, "in_use_frees") == 1);
        st_run_child(timing, ratio5, &c);
        CHECK(c.exit_code == 0);
        return 0;
    }
    CHECK(strcmp(argv[1], "registered") == 0);
    st_run_child(registered, base, &c);
    CHECK(c.exit_code == 0);
    CHECK(st_report_num(c.report, "pageable_h2d_bytes") == BYTES);
    CHECK(st_report_num(c.report, "pageable_d2h_bytes") == 0);
    CHECK(st_report_num(c.report, "pinned_host_bytes") == 8192);
    CHECK(st_report_num(c.report, "peak_pinned_host_bytes") == BYTES + 4096);
    return 0;
}
