/* page/fingerprint.c: write-back elision. When a weight is paged in, a kernel of the
 * shim's own fingerprints it on the GPU; at eviction the same kernel runs again, and if
 * the two fingerprints agree the contents are still those of the host backing, so no
 * byte is copied back. Owns the fingerprint kernel, its device slots and host buffer.
 * Callers hold the page lock. */
#define _GNU_SOURCE
#include "bs.h"
#include "page/internal.h"

#include "bs_fingerprint_ptx.h"

#include <stdlib.h>

#define SLOTS BS_FP_SLOTS

/* fingerprint.c's state, all of it (under the page lock). */
static struct {
    CUmodule mod;
    CUfunction fn;
    CUdeviceptr dev;  /* SLOTS x { at page-in, at eviction } */
    uint64_t *host;   /* pinned, SLOTS x 2 words: evictions may overlap */
    int free_slots[SLOTS], nfree;
    bool usable;
} FP;

bool bs_fp_setup(void)
{
    CUresult r;
    if ((r = bs_drv.cuModuleLoadData(&FP.mod, bs_fingerprint_ptx)) != CUDA_SUCCESS ||
        (r = bs_drv.cuModuleGetFunction(&FP.fn, FP.mod, "bs_fingerprint_u64")) != CUDA_SUCCESS ||
        (r = bs_real.cuMemAlloc_v2(&FP.dev, BS_FP_DEVICE_BYTES)) != CUDA_SUCCESS ||
        (r = bs_drv.cuMemHostAlloc((void **)&FP.host, BS_FP_DEVICE_BYTES, 0)) != CUDA_SUCCESS) {
        if (FP.dev) /* the shim's VRAM is charged only when all of it is there */
            bs_real.cuMemFree_v2(FP.dev);
        FP.dev = 0;
        bs_log(BS_LOG_WARN, "cannot load the fingerprint kernel (CUDA error %d): every "
               "evicted weight that kernels used will be copied back", (int)r);
        return false;
    }
    for (int i = 0; i < SLOTS; i++)
        FP.free_slots[i] = SLOTS - 1 - i;
    FP.nfree = SLOTS;
    FP.usable = true;
    return true;
}

int bs_fp_slot_get(void)
{
    return FP.usable && FP.nfree ? FP.free_slots[--FP.nfree] : -1;
}

void bs_fp_slot_put(int slot)
{
    if (slot >= 0 && FP.nfree < SLOTS)
        FP.free_slots[FP.nfree++] = slot;
}

/* Fingerprints [va, va+size) into word `which` (0 page-in, 1 eviction) of slot, on s. */
CUresult bs_fp_launch(int slot, int which, uint64_t va, uint64_t size, CUstream s)
{
    CUdeviceptr out = FP.dev + (uint64_t)slot * 16 + (uint64_t)which * 8;
    CUdeviceptr data = va;
    uint64_t bytes = size;
    void *params[] = { &out, &data, &bytes };
    /* One block of 1024 threads: the kernel's documented launch shape. */
    return bs_real.cuLaunchKernel(FP.fn, 1, 1, 1, 1024, 1, 1, 0, s, params, NULL);
}

/* Queues on s the copy of slot's two fingerprints to the host; bs_fp_equal reads
 * them once work on s up to here has completed. */
CUresult bs_fp_fetch(int slot, CUstream s)
{
    return bs_real.cuMemcpyDtoHAsync_v2(FP.host + 2 * slot, FP.dev + (uint64_t)slot * 16, 16, s);
}

bool bs_fp_equal(int slot)
{
    return FP.host[2 * slot] == FP.host[2 * slot + 1];
}

void bs_fp_reset(void)
{
    FP.usable = false;
    FP.nfree = 0;
}
