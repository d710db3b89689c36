/* gpu: host-device copy bandwidth by copy size, pinned and pageable, each direction
 * alone and both at once (pinned). Each copy is timed by events on its stream (the
 * GPU's view) and by the host clock from the call to the stream's completion (what a
 * caller waits). Rows: {"kind": "bandwidth", "host": "pinned"|"pageable", "dir":
 * "h2d"|"d2h"|"both", "bytes", "reps", "gbps_event" (median), "gbps_wall" (median)};
 * GB/s are 10^9 bytes per second.
 * usage: drv-bandwidth [MIN_SIZE [MAX_SIZE]]   (default 64K 1G, sizes x4) */
#include "drv.h"

static int reps_for(uint64_t bytes)
{
    uint64_t r = (2ull << 30) / bytes; /* about 2 GiB moved per row */
    return r < 3 ? 3 : r > 30 ? 30 : (int)r;
}

static void row(const char *host, const char *dir, uint64_t bytes, int reps, double *ev_ms,
                double *wall_us)
{
    double ev = drv_median(ev_ms, reps), wall = drv_median(wall_us, reps);
    printf("{\"kind\": \"bandwidth\", \"host\": \"%s\", \"dir\": \"%s\", \"bytes\": %llu, "
           "\"reps\": %d, \"gbps_event\": %.3f, \"gbps_wall\": %.3f}\n",
           host, dir, (unsigned long long)bytes, reps,
           ev > 0 ? bytes / (ev * 1e-3) / 1e9 : 0.0, wall > 0 ? bytes / (wall * 1e-6) / 1e9 : 0.0);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    uint64_t lo = argc > 1 ? drv_parse_size(argv[1]) : 64ull << 10;
    uint64_t hi = argc > 2 ? drv_parse_size(argv[2]) : 1ull << 30;
    if (!lo || !hi || lo > hi) {
        fprintf(stderr, "usage: drv-bandwidth [MIN_SIZE [MAX_SIZE]]  (sizes like 64K, 1G)\n");
        return 2;
    }
    struct drv d;
    drv_open(&d, "drv-bandwidth");

    CUstream s[2];
    CUevent e0[2], e1[2];
    for (int i = 0; i < 2; i++) {
        DRV_CHECK(D.cuStreamCreate(&s[i], CU_STREAM_NON_BLOCKING));
        DRV_CHECK(D.cuEventCreate(&e0[i], CU_EVENT_DEFAULT));
        DRV_CHECK(D.cuEventCreate(&e1[i], CU_EVENT_DEFAULT));
    }
    CUdeviceptr dev[2];
    void *pinned[2];
    for (int i = 0; i < 2; i++) {
        DRV_CHECK(D.cuMemAlloc(&dev[i], hi));
        DRV_CHECK(D.cuMemAllocHost(&pinned[i], hi));
        memset(pinned[i], 0x5a + i, hi);
    }
    unsigned char *pageable = malloc(hi);
    if (!pageable) {
        fprintf(stderr, "drv-bandwidth: out of host memory for %llu bytes\n", (unsigned long long)hi);
        return 1;
    }
    memset(pageable, 0x33, hi); /* touch every page before timing */

    double ev_ms[64], wall_us[64];
    for (uint64_t bytes = lo; bytes <= hi; bytes *= 4) {
        int reps = reps_for(bytes);
        for (int k = 0; k < 4; k++) {
            int pin = k < 2, h2d = k % 2 == 0;
            void *h = pin ? pinned[0] : pageable;
            for (int r = -1; r < reps; r++) { /* r = -1 warms up */
                double t0 = drv_now_us();
                DRV_CHECK(D.cuEventRecord(e0[0], s[0]));
                if (h2d)
                    DRV_CHECK(D.cuMemcpyHtoDAsync(dev[0], h, bytes, s[0]));
                else
                    DRV_CHECK(D.cuMemcpyDtoHAsync(h, dev[0], bytes, s[0]));
                DRV_CHECK(D.cuEventRecord(e1[0], s[0]));
                DRV_CHECK(D.cuStreamSynchronize(s[0]));
                double t1 = drv_now_us();
                if (r < 0)
                    continue;
                float ms = 0;
                DRV_CHECK(D.cuEventElapsedTime(&ms, e0[0], e1[0]));
                ev_ms[r] = ms;
                wall_us[r] = t1 - t0;
            }
            row(pin ? "pinned" : "pageable", h2d ? "h2d" : "d2h", bytes, reps, ev_ms, wall_us);
        }
        /* Both directions at once, pinned: H2D on stream 0, D2H on stream 1, started
         * together (stream 1 waits on stream 0's start event). Bytes are one direction's;
         * gbps is per direction. */
        for (int r = -1; r < reps; r++) {
            double t0 = drv_now_us();
            DRV_CHECK(D.cuEventRecord(e0[0], s[0]));
            DRV_CHECK(D.cuStreamWaitEvent(s[1], e0[0], 0));
            DRV_CHECK(D.cuMemcpyHtoDAsync(dev[0], pinned[0], bytes, s[0]));
            DRV_CHECK(D.cuMemcpyDtoHAsync(pinned[1], dev[1], bytes, s[1]));
            DRV_CHECK(D.cuEventRecord(e1[0], s[0]));
            DRV_CHECK(D.cuEventRecord(e1[1], s[1]));
            DRV_CHECK(D.cuStreamSynchronize(s[0]));
            DRV_CHECK(D.cuStreamSynchronize(s[1]));
            double t1 = drv_now_us();
            if (r < 0)
                continue;
            float a = 0, b = 0;
            DRV_CHECK(D.cuEventElapsedTime(&a, e0[0], e1[0]));
            DRV_CHECK(D.cuEventElapsedTime(&b, e0[0], e1[1]));
            ev_ms[r] = a > b ? a : b;
            wall_us[r] = t1 - t0;
        }
        row("pinned", "both", bytes, reps, ev_ms, wall_us);
        if (bytes > hi / 4)
            break; /* the next size would overflow past hi */
    }

    for (int i = 0; i < 2; i++) {
        DRV_CHECK(D.cuMemFree(dev[i]));
        DRV_CHECK(D.cuMemFreeHost(pinned[i]));
        DRV_CHECK(D.cuEventDestroy(e0[i]));
        DRV_CHECK(D.cuEventDestroy(e1[i]));
        DRV_CHECK(D.cuStreamDestroy(s[i]));
    }
    free(pageable);
    printf("{\"kind\": \"done\", \"program\": \"drv-bandwidth\", \"simulated\": %s}\n",
           d.simulated ? "true" : "false");
    return 0;
}
