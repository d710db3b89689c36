/* faults: a small transformer-shaped program that checks every CUDA call and, on any
 * error, frees everything it holds and exits 2. Run under CUDASIM_FAIL it shows what
 * an application sees when the driver (or blockswap's use of it) fails anywhere.
 *
 * Six blocks of three weights (192, 192 and 128 KiB; run with BLOCKSWAP_MIN_BYTES=64K
 * so that they are managed, each in its own 2 MiB of VRAM) are loaded from the host,
 * half through pinned memory and cuMemcpyHtoDAsync, half through pageable memory and
 * cuMemcpyHtoD; two steps run every block (gemv, tanh, axpy) on a
 * created stream; in step 1 block 2's first weight is changed in place (a LoRA-like
 * patch), so it must be written back when evicted. Printed, one line each: the
 * activations' checksum after every step (bs_checksum_u64 on the device) and every
 * weight's FNV-1a read back at the end. With and without blockswap, under any limit
 * that holds one block's working set, the output is the same.
 *
 * usage: model [STEPS]     exit 0: done; 2: a CUDA call failed and was handled */
#include "bs_kernels_ptx.h"

#include <cuda.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCKS 6
#define PER_BLOCK 3
#define NW (BLOCKS * PER_BLOCK)
#define DIM 256
#define HID 192
#define GATE 128

struct model {
    CUcontext ctx;
    bool ctx_retained;
    CUmodule mod;
    CUfunction gemv, tanh_f, axpy, checksum;
    CUstream s;
    CUdeviceptr w[NW], x, h, x2, g, sum;
    size_t wbytes[NW];
    void *pinned;
    float *host;
};

static const char *failed_call;
static CUresult failed_with;

/* Records the first failure and jumps to the caller's cleanup. */
#define CK(call)                                                               \
    do {                                                                       \
        CUresult r_ = (call);                                                  \
        if (r_ != CUDA_SUCCESS) {                                              \
            failed_call = #call;                                               \
            failed_with = r_;                                                  \
            goto fail;                                                         \
        }                                                                      \
    } while (0)

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void fill(float *dst, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        dst[i] = ((float)(uint32_t)(s >> 40) / 16777216.0f - 0.5f) * 0.06f;
    }
}

static size_t weight_bytes(int i)
{
    switch (i % PER_BLOCK) {
    case 0: return (size_t)HID * DIM * 4;   /* W1: DIM -> HID */
    case 1: return (size_t)DIM * HID * 4;   /* W2: HID -> DIM */
    default: return (size_t)DIM * GATE * 4; /* G: first GATE of x -> DIM */
    }
}

static CUresult gemv(struct model *m, CUdeviceptr y, CUdeviceptr W, CUdeviceptr x, uint32_t rows,
                     uint32_t cols)
{
    void *p[] = { &y, &W, &x, &rows, &cols };
    return cuLaunchKernel(m->gemv, 1, 1, 1, 128, 1, 1, 0, m->s, p, NULL);
}

static CUresult tanh_(struct model *m, CUdeviceptr y, uint64_t n)
{
    void *p[] = { &y, &n };
    return cuLaunchKernel(m->tanh_f, 1, 1, 1, 128, 1, 1, 0, m->s, p, NULL);
}

static CUresult axpy(struct model *m, CUdeviceptr y, CUdeviceptr x, float a, uint64_t n)
{
    void *p[] = { &y, &x, &a, &n };
    return cuLaunchKernel(m->axpy, 1, 1, 1, 128, 1, 1, 0, m->s, p, NULL);
}

static CUresult block(struct model *m, int b)
{
    CUdeviceptr *w = &m->w[b * PER_BLOCK];
    CUresult r;
    if ((r = gemv(m, m->h, w[0], m->x, HID, DIM)) || (r = tanh_(m, m->h, HID)) ||
        (r = gemv(m, m->x2, w[1], m->h, DIM, HID)) || (r = gemv(m, m->g, w[2], m->x, DIM, GATE)) ||
        (r = axpy(m, m->x, m->x2, 0.5f, DIM)) || (r = axpy(m, m->x, m->g, 0.25f, DIM)))
        return r;
    return tanh_(m, m->x, DIM);
}

/* Frees whatever was made, ignoring errors: after a failure, the program's own
 * cleanup is all an application can do. */
static void teardown(struct model *m)
{
    if (m->s)
        cuStreamSynchronize(m->s);
    for (int i = 0; i < NW; i++)
        if (m->w[i])
            cuMemFree(m->w[i]);
    CUdeviceptr *small[] = { &m->x, &m->h, &m->x2, &m->g, &m->sum };
    for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++)
        if (*small[i])
            cuMemFree(*small[i]);
    if (m->pinned)
        cuMemFreeHost(m->pinned);
    if (m->s)
        cuStreamDestroy(m->s);
    if (m->mod)
        cuModuleUnload(m->mod);
    if (m->ctx_retained)
        cuDevicePrimaryCtxRelease(0);
    free(m->host);
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 2;
    struct model m;
    memset(&m, 0, sizeof(m));
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t maxw = (size_t)HID * DIM * 4;
    if (!(m.host = malloc(maxw)))
        return 1;

    CUdevice dev;
    CK(cuInit(0));
    CK(cuDeviceGet(&dev, 0));
    CK(cuDevicePrimaryCtxRetain(&m.ctx, dev));
    m.ctx_retained = true;
    CK(cuCtxSetCurrent(m.ctx));
    CK(cuModuleLoadData(&m.mod, bs_kernels_ptx));
    CK(cuModuleGetFunction(&m.gemv, m.mod, "bs_gemv_f32"));
    CK(cuModuleGetFunction(&m.tanh_f, m.mod, "bs_tanh_f32"));
    CK(cuModuleGetFunction(&m.axpy, m.mod, "bs_axpy_f32"));
    CK(cuModuleGetFunction(&m.checksum, m.mod, "bs_checksum_u64"));
    CK(cuStreamCreate(&m.s, CU_STREAM_NON_BLOCKING));
    CK(cuMemAllocHost(&m.pinned, maxw));

    /* Load: weights from the host, before any kernel, in execution order. */
    for (int i = 0; i < NW; i++) {
        m.wbytes[i] = weight_bytes(i);
        CK(cuMemAlloc(&m.w[i], m.wbytes[i]));
        if (i % 2) {
            fill(m.pinned, m.wbytes[i] / 4, (uint64_t)i + 1);
            CK(cuMemcpyHtoDAsync(m.w[i], m.pinned, m.wbytes[i], m.s));
            CK(cuStreamSynchronize(m.s)); /* the pinned buffer is reused */
        } else {
            fill(m.host, m.wbytes[i] / 4, (uint64_t)i + 1);
            CK(cuMemcpyHtoD(m.w[i], m.host, m.wbytes[i]));
        }
    }
    CK(cuMemAlloc(&m.x, DIM * 4));
    CK(cuMemAlloc(&m.h, HID * 4));
    CK(cuMemAlloc(&m.x2, DIM * 4));
    CK(cuMemAlloc(&m.g, DIM * 4));
    CK(cuMemAlloc(&m.sum, 8));
    fill(m.host, DIM, 1000);
    CK(cuMemcpyHtoD(m.x, m.host, DIM * 4));

    for (int step = 0; step < steps; step++) {
        for (int b = 0; b < BLOCKS; b++) {
            CK(block(&m, b));
            if (step == 1 && b == 2) /* patch W1 in place: it must be written back */
                CK(axpy(&m, m.w[b * PER_BLOCK], m.w[b * PER_BLOCK], 0.125f, (uint64_t)HID * DIM));
        }
        uint64_t bytes = DIM * 4, sum;
        void *p[] = { &m.sum, &m.x, &bytes };
        CK(cuLaunchKernel(m.checksum, 1, 1, 1, 1, 1, 1, 0, m.s, p, NULL));
        CK(cuMemcpyDtoHAsync(m.pinned, m.sum, 8, m.s));
        CK(cuStreamSynchronize(m.s));
        memcpy(&sum, m.pinned, 8);
        printf("step %d activations 0x%016llx\n", step, (unsigned long long)sum);
    }
    for (int i = 0; i < NW; i++) {
        CK(cuMemcpyDtoH(m.host, m.w[i], m.wbytes[i]));
        printf("weight %d 0x%016llx\n", i, (unsigned long long)fnv(m.host, m.wbytes[i]));
    }
    teardown(&m);
    return 0;

fail:;
    const char *name = "?";
    cuGetErrorName(failed_with, &name);
    fprintf(stderr, "model: %s failed: %s (%d)\n", failed_call, name ? name : "?", (int)failed_with);
    teardown(&m);
    return 2;
}
