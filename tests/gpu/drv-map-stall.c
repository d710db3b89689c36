/* gpu: does mapping a fresh range stall kernels that are running? A stream runs
 * KERNELS fixed-work kernels back to back (a fill of BUF bytes by a small grid), each
 * timed by events, three times: with the host idle, with the host mapping fresh
 * memory in a loop for as long as they run (cuMemCreate, cuMemMap, cuMemSetAccess of
 * a new range, then cuMemUnmap, cuMemRelease), and idle again. A stall of the GPU by
 * the mapping calls shows as longer kernels in the middle phase.
 * Rows: {"kind": "map-stall", "map_bytes", "kernel_ms_idle" (median of both idle
 * phases), "kernel_ms_mapping", "kernel_ms_mapping_max", "maps", "map_cycle_us", "ratio"}.
 * usage: drv-map-stall [BUF_SIZE [KERNELS [MAP_SIZE ...]]]   (default 256M 40 2M 64M 1G) */
#include "drv.h"

#define MAX_KERNELS 1000
#define MAX_MAPS 10000

struct phase {
    double ms[MAX_KERNELS];
    int maps;
    double map_us;
};

static CUfunction fill;
static CUstream s;
static CUevent ev[MAX_KERNELS + 1];
static CUdeviceptr buf;
static uint64_t buf_bytes;
static int nk;

/* Runs the kernels; with map_bytes, maps and unmaps fresh memory while they run. */
static void phase(struct phase *ph, uint64_t map_bytes, const CUmemAllocationProp *prop,
                  const CUmemAccessDesc *acc, CUdeviceptr va)
{
    DRV_CHECK(D.cuEventRecord(ev[0], s));
    for (int k = 0; k < nk; k++) {
        drv_fill(fill, s, buf, 0x01010101u * (uint32_t)(k + 1), buf_bytes / 4, 8);
        DRV_CHECK(D.cuEventRecord(ev[k + 1], s));
    }
    ph->maps = 0;
    ph->map_us = 0;
    double spent = 0;
    /* A cap on the loop: on the simulated driver host calls may not advance time. */
    while (map_bytes && ph->maps < MAX_MAPS && D.cuEventQuery(ev[nk]) == CUDA_ERROR_NOT_READY) {
        CUmemGenericAllocationHandle h;
        double a = drv_now_us();
        DRV_CHECK(D.cuMemCreate(&h, map_bytes, prop, 0));
        DRV_CHECK(D.cuMemMap(va, map_bytes, 0, h, 0));
        DRV_CHECK(D.cuMemSetAccess(va, map_bytes, acc, 1));
        DRV_CHECK(D.cuMemUnmap(va, map_bytes));
        DRV_CHECK(D.cuMemRelease(h));
        spent += drv_now_us() - a;
        ph->maps++;
        if (spent > 60e6)
            break; /* never more than a minute */
    }
    if (ph->maps)
        ph->map_us = spent / ph->maps;
    DRV_CHECK(D.cuStreamSynchronize(s));
    for (int k = 0; k < nk; k++) {
        float ms = 0;
        DRV_CHECK(D.cuEventElapsedTime(&ms, ev[k], ev[k + 1]));
        ph->ms[k] = ms;
    }
}

int main(int argc, char **argv)
{
    buf_bytes = argc > 1 ? drv_parse_size(argv[1]) : 256ull << 20;
    nk = argc > 2 ? atoi(argv[2]) : 40;
    uint64_t def_sizes[] = { 2ull << 20, 64ull << 20, 1ull << 30 };
    uint64_t sizes[16];
    int nsizes = 0;
    for (int i = 3; i < argc && nsizes < 16; i++)
        sizes[nsizes++] = drv_parse_size(argv[i]);
    if (!nsizes)
        for (; nsizes < 3; nsizes++)
            sizes[nsizes] = def_sizes[nsizes];
    int ok = buf_bytes >= 4 && nk >= 2 && nk <= MAX_KERNELS;
    for (int i = 0; i < nsizes; i++)
        ok = ok && sizes[i];
    if (!ok) {
        fprintf(stderr, "usage: drv-map-stall [BUF_SIZE [KERNELS (2-%d) [MAP_SIZE ...]]]\n", MAX_KERNELS);
        return 2;
    }
    struct drv d;
    drv_open(&d, "drv-map-stall");
    fill = drv_fn(&d, "bs_fill_u32");
    DRV_CHECK(D.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    for (int k = 0; k <= nk; k++)
        DRV_CHECK(D.cuEventCreate(&ev[k], CU_EVENT_DEFAULT));
    DRV_CHECK(D.cuMemAlloc(&buf, buf_bytes));

    struct drv_vmm vmm;
    drv_vmm_init(&d, &vmm);
    CUmemAllocationProp prop = vmm.prop;
    CUmemAccessDesc acc = vmm.acc;
    size_t gran = vmm.gran;

    static struct phase warm, idle1, mapping, idle2;
    phase(&warm, 0, &prop, &acc, 0);
    for (int i = 0; i < nsizes; i++) {
        uint64_t mb = (sizes[i] + gran - 1) / gran * gran;
        CUdeviceptr va;
        DRV_CHECK(D.cuMemAddressReserve(&va, mb, 0, 0, 0));
        phase(&idle1, 0, &prop, &acc, va);
        phase(&mapping, mb, &prop, &acc, va);
        phase(&idle2, 0, &prop, &acc, va);
        DRV_CHECK(D.cuMemAddressFree(va, mb));
        static double both[2 * MAX_KERNELS];
        memcpy(both, idle1.ms, nk * sizeof(double));
        memcpy(both + nk, idle2.ms, nk * sizeof(double));
        double idle = drv_median(both, 2 * nk);
        double during = drv_median(mapping.ms, nk); /* sorted: the last is the maximum */
        printf("{\"kind\": \"map-stall\", \"buffer_bytes\": %llu, \"kernels\": %d, \"map_bytes\": %llu, "
               "\"kernel_ms_idle\": %.4f, \"kernel_ms_mapping\": %.4f, \"kernel_ms_mapping_max\": %.4f, "
               "\"kernel_ms_idle_max\": %.4f, \"maps\": %d, \"map_cycle_us\": %.1f, \"ratio\": %.4f, "
               "\"simulated\": %s}\n",
               (unsigned long long)buf_bytes, nk, (unsigned long long)mb, idle, during,
               mapping.ms[nk - 1], both[2 * nk - 1], mapping.maps, mapping.map_us,
               idle > 0 ? during / idle : 0.0, d.simulated ? "true" : "false");
        fflush(stdout);
    }
    DRV_CHECK(D.cuMemFree(buf));
    for (int k = 0; k <= nk; k++)
        DRV_CHECK(D.cuEventDestroy(ev[k]));
    DRV_CHECK(D.cuStreamDestroy(s));
    printf("{\"kind\": \"done\", \"program\": \"drv-map-stall\", \"simulated\": %s}\n",
           d.simulated ? "true" : "false");
    return 0;
}
