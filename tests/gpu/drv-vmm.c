/* gpu: what the virtual memory management calls cost by size, on the host clock:
 * cuMemCreate, cuMemMap, cuMemSetAccess, cuMemUnmap, cuMemRelease, each the median
 * (and the maximum) of REPS rounds into one reserved range. A second unmap figure is
 * taken after a kernel wrote the range and the stream was synchronised (the paging
 * engine's case: the GPU's translations for the range are then live).
 * Rows: {"kind": "vmm", "bytes", "reps", "<call>_us", "<call>_us_max", ...}.
 * usage: drv-vmm [MIN_SIZE [MAX_SIZE [REPS]]]   (default 2M 1G 10, sizes x4, MAX last) */
#include "drv.h"

enum { CREATE, MAP, ACCESS, UNMAP, RELEASE, UNMAP_USED, NCALLS };
static const char *call_names[NCALLS] = { "create", "map", "set_access", "unmap", "release",
                                          "unmap_after_use" };

int main(int argc, char **argv)
{
    uint64_t lo = argc > 1 ? drv_parse_size(argv[1]) : 2ull << 20;
    uint64_t hi = argc > 2 ? drv_parse_size(argv[2]) : 1ull << 30;
    int reps = argc > 3 ? atoi(argv[3]) : 10;
    if (!lo || !hi || lo > hi || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: drv-vmm [MIN_SIZE [MAX_SIZE [REPS]]]  (sizes like 2M, 1G; REPS 1-1000)\n");
        return 2;
    }
    struct drv d;
    drv_open(&d, "drv-vmm");
    CUfunction fill = drv_fn(&d, "bs_fill_u32");
    CUstream s;
    DRV_CHECK(D.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));

    struct drv_vmm vmm;
    drv_vmm_init(&d, &vmm);
    CUmemAllocationProp prop = vmm.prop;
    CUmemAccessDesc acc = vmm.acc;
    size_t gran = vmm.gran;
    printf("{\"kind\": \"vmm-granularity\", \"bytes\": %zu, \"simulated\": %s}\n", gran,
           d.simulated ? "true" : "false");

    double *t[NCALLS];
    for (int c = 0; c < NCALLS; c++) {
        t[c] = calloc((size_t)reps, sizeof(double));
        if (!t[c])
            return 1;
    }
    for (uint64_t bytes = lo;; bytes = bytes * 4 > hi && bytes < hi ? hi : bytes * 4) {
        uint64_t size = (bytes + gran - 1) / gran * gran;
        CUdeviceptr va;
        DRV_CHECK(D.cuMemAddressReserve(&va, size, 0, 0, 0));
        for (int r = 0; r < reps; r++) {
            CUmemGenericAllocationHandle h;
            double a = drv_now_us();
            DRV_CHECK(D.cuMemCreate(&h, size, &prop, 0));
            double b = drv_now_us();
            DRV_CHECK(D.cuMemMap(va, size, 0, h, 0));
            double c = drv_now_us();
            DRV_CHECK(D.cuMemSetAccess(va, size, &acc, 1));
            double e = drv_now_us();
            DRV_CHECK(D.cuMemUnmap(va, size));
            double f = drv_now_us();
            /* Map again, let a kernel write all of it, wait, then unmap. */
            DRV_CHECK(D.cuMemMap(va, size, 0, h, 0));
            DRV_CHECK(D.cuMemSetAccess(va, size, &acc, 1));
            drv_fill(fill, s, va, 0x1234u + (uint32_t)r, size / 4, 256);
            DRV_CHECK(D.cuStreamSynchronize(s));
            double g = drv_now_us();
            DRV_CHECK(D.cuMemUnmap(va, size));
            double i = drv_now_us();
            DRV_CHECK(D.cuMemRelease(h));
            double j = drv_now_us();
            t[CREATE][r] = b - a;
            t[MAP][r] = c - b;
            t[ACCESS][r] = e - c;
            t[UNMAP][r] = f - e;
            t[UNMAP_USED][r] = i - g;
            t[RELEASE][r] = j - i;
        }
        DRV_CHECK(D.cuMemAddressFree(va, size));
        printf("{\"kind\": \"vmm\", \"bytes\": %llu, \"reps\": %d", (unsigned long long)size, reps);
        for (int c = 0; c < NCALLS; c++) {
            double med = drv_median(t[c], reps); /* sorted: the last is the maximum */
            printf(", \"%s_us\": %.1f, \"%s_us_max\": %.1f", call_names[c], med, call_names[c],
                   t[c][reps - 1]);
        }
        printf(", \"simulated\": %s}\n", d.simulated ? "true" : "false");
        fflush(stdout);
        if (bytes >= hi)
            break;
    }
    DRV_CHECK(D.cuStreamDestroy(s));
    printf("{\"kind\": \"done\", \"program\": \"drv-vmm\", \"simulated\": %s}\n",
           d.simulated ? "true" : "false");
    return 0;
}
