/* CUDASIM_REPORT writes a JSON object at exit with every documented field; a bad
 * CUDASIM_* value gives one message naming the variable, the value and what is
 * accepted, and the default applies. */
#include "simtest.h"

static const char *const fields[] = {
    "peak_device_bytes", "device_bytes", "h2d_bytes", "d2h_bytes", "d2d_bytes", "virtual_time_ns",
    "compute_busy_ns", "h2d_busy_ns", "d2h_busy_ns", "kernels", "errors", "first_error", "illegal_address",
    "pinned_host_bytes", "races", "in_use_frees",
};

static void workload(void)
{
    st_setup();
    CUdeviceptr a = st_alloc(1 << 20), b = st_alloc(1 << 20);
    char host[4096] = {1};
    CHECK_CU(cuMemcpyHtoD(a, host, sizeof(host)));
    CHECK_CU(cuMemcpyDtoD(b, a, sizeof(host)));
    CHECK_CU(cuMemcpyDtoH(host, b, 1024));
    uint32_t v = 1;
    uint64_t n = 16;
    CHECK_CU(st_launch("bs_fill_u32", NULL, 3, &a, &v, &n));
    CHECK_CU(cuMemFree(b));
}

static void with_error(void)
{
    workload();
    CHECK(cuMemcpyHtoD(4096, "x", 1) == CUDA_ERROR_ILLEGAL_ADDRESS);
}

static void vram_total(void)
{
    st_setup();
    size_t fr, tot;
    CHECK_CU(cuMemGetInfo(&fr, &tot));
    fprintf(stderr, "TOTAL=%zu\n", tot);
}

int main(void)
{
    struct st_child c;
    st_run_child(workload, NULL, &c);
    CHECK(c.exit_code == 0);
    CHECK(c.report[0] == '{');
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char key[64];
        snprintf(key, sizeof(key), "\"%s\": ", fields[i]);
        if (!strstr(c.report, key)) {
            fprintf(stderr, "report lacks %s:\n%s\n", fields[i], c.report);
            return 1;
        }
    }
    CHECK(st_report_num(c.report, "peak_device_bytes") == 2 << 20);
    CHECK(st_report_num(c.report, "device_bytes") == 1 << 20);
    CHECK(st_report_num(c.report, "h2d_bytes") == 4096);
    CHECK(st_report_num(c.report, "d2d_bytes") == 4096);
    CHECK(st_report_num(c.report, "d2h_bytes") == 1024);
    CHECK(st_report_num(c.report, "kernels") == 1);
    CHECK(st_report_num(c.report, "errors") == 0);
    CHECK(strstr(c.report, "\"first_error\": null"));
    CHECK(strstr(c.report, "\"illegal_address\": false"));

    st_run_child(with_error, NULL, &c);
    CHECK(c.exit_code == 0);
    CHECK(st_report_num(c.report, "errors") == 1);
    CHECK(strstr(c.report, "\"first_error\": \"copy cuMemcpyHtoD_v2 write of 0x1000"));
    CHECK(strstr(c.report, "\"illegal_address\": true"));

    const char *const bad[] = {"CUDASIM_VRAM=lots", "CUDASIM_PCIE_GBPS=-3", NULL};
    st_run_child(vram_total, bad, &c);
    CHECK(c.exit_code == 0);
    CHECK(strstr(c.err, "cudasim: warning: CUDASIM_VRAM=\"lots\" is not valid: expected a positive byte count"));
    CHECK(strstr(c.err, "using the default 8G"));
    CHECK(strstr(c.err, "CUDASIM_PCIE_GBPS=\"-3\" is not valid"));
    CHECK(strstr(c.err, "TOTAL=8589934592"));

    const char *const good[] = {"CUDASIM_VRAM=3GiB", NULL};
    st_run_child(vram_total, good, &c);
    CHECK(c.exit_code == 0);
    CHECK(strstr(c.err, "warning") == NULL);
    CHECK(strstr(c.err, "TOTAL=3221225472"));
    return 0;
}
