/* gpu: is it safe to unmap a range once an event recorded after its last use has
 * completed, with no device-wide synchronisation, while kernels on other streams keep
 * running (on ranges next to it in the same reservation)? The paging engine relies on
 * it (DESIGN.md section 4). Meant to run under compute-sanitizer as well as alone.
 *
 * One VA reservation holds 2 x NPAIR ranges, alternately "churn" and "stable". Each
 * iteration a work stream fills the next churn range and fingerprints it (the last
 * use), records that range's event; the host then waits on the PREVIOUS churn range's
 * event only, unmaps and releases it, and maps fresh memory there. Meanwhile two
 * background streams fill and fingerprint the stable ranges between them, fed every
 * iteration, never synchronised until the end. All fingerprints are checked on the
 * host at the end. A fault (sticky error) fails a call and exits 1 naming it.
 * Rows: {"kind": "unmap-safety", ..., "mismatches", "verdict": "safe"|"unsafe"}.
 * usage: drv-unmap-safety [ITERATIONS [RANGE_SIZE]]   (default 1000 32M) */
#include "drv.h"

#define NPAIR 4
#define NBG 2
#define NVAL 5

static const uint32_t values[NVAL] = { 0x3f800000u, 0x40000000u, 0xdeadbeefu, 0x12345678u,
                                       0x0badf00du };

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 1000;
    uint64_t range = argc > 2 ? drv_parse_size(argv[2]) : 32ull << 20;
    if (iters < 2 || iters > 1000000 || !range) {
        fprintf(stderr, "usage: drv-unmap-safety [ITERATIONS (>= 2) [RANGE_SIZE]]\n");
        return 2;
    }
    struct drv d;
    drv_open(&d, "drv-unmap-safety");
    CUfunction fill = drv_fn(&d, "bs_fill_u32"), fp = drv_fn(&d, "bs_fingerprint_u64");

    struct drv_vmm vmm;
    drv_vmm_init(&d, &vmm);
    CUmemAllocationProp prop = vmm.prop;
    CUmemAccessDesc acc = vmm.acc;
    size_t gran = vmm.gran;
    range = (range + gran - 1) / gran * gran;

    CUdeviceptr va;
    CUmemGenericAllocationHandle h[2 * NPAIR];
    DRV_CHECK(D.cuMemAddressReserve(&va, 2 * NPAIR * range, 0, 0, 0));
    for (int r = 0; r < 2 * NPAIR; r++) {
        DRV_CHECK(D.cuMemCreate(&h[r], range, &prop, 0));
        DRV_CHECK(D.cuMemMap(va + r * range, range, 0, h[r], 0));
        DRV_CHECK(D.cuMemSetAccess(va + r * range, range, &acc, 1));
    }

    uint64_t expect[NVAL];
    for (int v = 0; v < NVAL; v++)
        expect[v] = drv_fingerprint_const(values[v], range);

    CUstream work, bg[NBG];
    CUevent last_use[NPAIR];
    DRV_CHECK(D.cuStreamCreate(&work, CU_STREAM_NON_BLOCKING));
    for (int b = 0; b < NBG; b++)
        DRV_CHECK(D.cuStreamCreate(&bg[b], CU_STREAM_NON_BLOCKING));
    for (int c = 0; c < NPAIR; c++)
        DRV_CHECK(D.cuEventCreate(&last_use[c], CU_EVENT_DISABLE_TIMING));
    CUdeviceptr out, bgout[NBG];
    DRV_CHECK(D.cuMemAlloc(&out, (size_t)iters * 8));
    for (int b = 0; b < NBG; b++)
        DRV_CHECK(D.cuMemAlloc(&bgout[b], (size_t)iters * 8));

    double t0 = drv_now_us();
    int unmaps = 0;
    for (int it = 0; it < iters; it++) {
        int c = it % NPAIR; /* churn range 2c */
        CUdeviceptr cr = va + (uint64_t)(2 * c) * range;
        drv_fill(fill, work, cr, values[it % NVAL], range / 4, 64);
        drv_fingerprint(fp, work, out + (uint64_t)it * 8, cr, range);
        DRV_CHECK(D.cuEventRecord(last_use[c], work));
        for (int b = 0; b < NBG; b++) {
            /* Stream b owns the stable ranges 2k + 1 with k % NBG == b. */
            int k = b + NBG * (it % (NPAIR / NBG));
            CUdeviceptr sr = va + (uint64_t)(2 * k + 1) * range;
            drv_fill(fill, bg[b], sr, values[(it + b + 1) % NVAL], range / 4, 64);
            drv_fingerprint(fp, bg[b], bgout[b] + (uint64_t)it * 8, sr, range);
        }
        if (it == 0)
            continue;
        /* The previous churn range: wait for its last use only, then replace its memory. */
        int p = (it - 1) % NPAIR;
        CUdeviceptr pr = va + (uint64_t)(2 * p) * range;
        DRV_CHECK(D.cuEventSynchronize(last_use[p]));
        DRV_CHECK(D.cuMemUnmap(pr, range));
        DRV_CHECK(D.cuMemRelease(h[2 * p]));
        DRV_CHECK(D.cuMemCreate(&h[2 * p], range, &prop, 0));
        DRV_CHECK(D.cuMemMap(pr, range, 0, h[2 * p], 0));
        DRV_CHECK(D.cuMemSetAccess(pr, range, &acc, 1));
        unmaps++;
    }
    DRV_CHECK(D.cuStreamSynchronize(work));
    for (int b = 0; b < NBG; b++)
        DRV_CHECK(D.cuStreamSynchronize(bg[b]));
    double t1 = drv_now_us();

    uint64_t *res = malloc((size_t)iters * 8);
    if (!res)
        return 1;
    long checks = 0, bad = 0;
    DRV_CHECK(D.cuMemcpyDtoH(res, out, (size_t)iters * 8));
    for (int it = 0; it < iters; it++, checks++)
        if (res[it] != expect[it % NVAL]) {
            if (bad++ < 5)
                fprintf(stderr, "drv-unmap-safety: churn fingerprint %d is %016llx, expected %016llx\n",
                        it, (unsigned long long)res[it], (unsigned long long)expect[it % NVAL]);
        }
    for (int b = 0; b < NBG; b++) {
        DRV_CHECK(D.cuMemcpyDtoH(res, bgout[b], (size_t)iters * 8));
        for (int it = 0; it < iters; it++, checks++)
            if (res[it] != expect[(it + b + 1) % NVAL]) {
                if (bad++ < 5)
                    fprintf(stderr, "drv-unmap-safety: background %d fingerprint %d is %016llx\n", b,
                            it, (unsigned long long)res[it]);
            }
    }
    printf("{\"kind\": \"unmap-safety\", \"iterations\": %d, \"range_bytes\": %llu, \"unmaps\": %d, "
           "\"background_streams\": %d, \"checks\": %ld, \"mismatches\": %ld, \"seconds\": %.3f, "
           "\"verdict\": \"%s\", \"simulated\": %s}\n",
           iters, (unsigned long long)range, unmaps, NBG, checks, bad, (t1 - t0) / 1e6,
           bad ? "unsafe" : "safe", d.simulated ? "true" : "false");

    for (int r = 0; r < 2 * NPAIR; r++) {
        DRV_CHECK(D.cuMemUnmap(va + r * range, range));
        DRV_CHECK(D.cuMemRelease(h[r]));
    }
    DRV_CHECK(D.cuMemAddressFree(va, 2 * NPAIR * range));
    DRV_CHECK(D.cuMemFree(out));
    for (int b = 0; b < NBG; b++) {
        DRV_CHECK(D.cuMemFree(bgout[b]));
        DRV_CHECK(D.cuStreamDestroy(bg[b]));
    }
    for (int c = 0; c < NPAIR; c++)
        DRV_CHECK(D.cuEventDestroy(last_use[c]));
    DRV_CHECK(D.cuStreamDestroy(work));
    free(res);
    return bad ? 1 : 0;
}
