/* gpu: the common part of the driver measurement programs (drv-*.c). The driver is
 * opened with dlopen at run time, never linked, so every program builds and starts
 * anywhere and exits 77 with one line where there is no driver or GPU. Under
 * LD_LIBRARY_PATH=build/src/sim they run on the simulated driver: that proves their
 * logic in CI, and every line they print then says "simulated": true (its times are
 * virtual or host times, not figures about a GPU).
 *
 * Output: one JSON object per line. The first says what ran where ("kind": "device");
 * each later one is a table row or a verdict. scripts/gpu-check collects them. */
#ifndef BS_DRV_H
#define BS_DRV_H

#define _GNU_SOURCE
#include "bs_kernels_ptx.h"

#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every driver function the programs use. cuda.h maps some names to versioned ones
 * (cuMemAlloc -> cuMemAlloc_v2); the members and the looked-up names follow it. */
#define DRV_FUNCS(X)                                                                  \
    X(cuInit) X(cuDriverGetVersion) X(cuDeviceGetCount) X(cuDeviceGet)                \
    X(cuDeviceGetName) X(cuDeviceTotalMem) X(cuDeviceGetAttribute)                    \
    X(cuDevicePrimaryCtxRetain) X(cuCtxSetCurrent) X(cuCtxSynchronize)                \
    X(cuGetErrorName) X(cuModuleLoadData) X(cuModuleGetFunction) X(cuLaunchKernel)    \
    X(cuMemAlloc) X(cuMemFree) X(cuMemAllocHost) X(cuMemFreeHost) X(cuMemGetInfo)     \
    X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync) X(cuMemcpyDtoH) X(cuMemsetD32Async)    \
    X(cuStreamCreate) X(cuStreamSynchronize) X(cuStreamDestroy) X(cuStreamWaitEvent)  \
    X(cuEventCreate) X(cuEventRecord) X(cuEventSynchronize) X(cuEventElapsedTime)     \
    X(cuEventDestroy) X(cuEventQuery)                                                 \
    X(cuMemGetAllocationGranularity) X(cuMemAddressReserve) X(cuMemAddressFree)       \
    X(cuMemCreate) X(cuMemRelease) X(cuMemMap) X(cuMemUnmap) X(cuMemSetAccess)

#define DRV_STR(f) #f
#define DRV_MEMBER(f) __typeof__(&f) f;
static struct {
    DRV_FUNCS(DRV_MEMBER)
} D;

struct drv {
    CUdevice dev;
    CUcontext ctx;
    CUmodule mod;
    int simulated;
    char name[256];
};

static const char *drv_prog = "drv";

static inline double drv_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* A failed call is a failed measurement: say which and stop (status 1). */
#define DRV_CHECK(call)                                                               \
    do {                                                                              \
        CUresult drv_r_ = (call);                                                     \
        if (drv_r_ != CUDA_SUCCESS) {                                                 \
            const char *drv_n_ = "?";                                                 \
            if (D.cuGetErrorName)                                                     \
                D.cuGetErrorName(drv_r_, &drv_n_);                                    \
            fprintf(stderr, "%s: %s failed: %s (%d) at %s:%d\n", drv_prog, #call,     \
                    drv_n_, (int)drv_r_, __FILE__, __LINE__);                         \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static inline void drv_skip(const char *why, const char *detail)
{
    printf("%s: no NVIDIA driver/GPU: %s%s%s (skipped, exit 77)\n", drv_prog, why,
           detail ? ": " : "", detail ? detail : "");
    exit(77);
}

/* Opens the driver (BS_DRV_LIBCUDA names another file: tests use it to prove the
 * no-driver path on any machine), makes the primary context of device 0 current,
 * loads the built-in kernels and prints the "device" line. */
static inline void drv_open(struct drv *d, const char *prog)
{
    drv_prog = prog;
    const char *lib = getenv("BS_DRV_LIBCUDA");
    void *h = dlopen(lib && *lib ? lib : "libcuda.so.1", RTLD_NOW);
    if (!h)
        drv_skip("libcuda.so.1 cannot be loaded", dlerror());
#define DRV_LOAD(f)                                                                   \
    D.f = (__typeof__(D.f))dlsym(h, DRV_STR(f));                                      \
    if (!D.f)                                                                         \
        drv_skip("the driver lacks " DRV_STR(f), NULL);
    DRV_FUNCS(DRV_LOAD)
#undef DRV_LOAD
    int n = 0;
    if (D.cuInit(0) != CUDA_SUCCESS || D.cuDeviceGetCount(&n) != CUDA_SUCCESS || n < 1)
        drv_skip("the driver found no usable GPU", NULL);
    DRV_CHECK(D.cuDeviceGet(&d->dev, 0));
    DRV_CHECK(D.cuDeviceGetName(d->name, sizeof(d->name), d->dev));
    DRV_CHECK(D.cuDevicePrimaryCtxRetain(&d->ctx, d->dev));
    DRV_CHECK(D.cuCtxSetCurrent(d->ctx));
    DRV_CHECK(D.cuModuleLoadData(&d->mod, bs_kernels_ptx));
    d->simulated = strstr(d->name, "simulated") != NULL;
    int ver = 0, vmm = 0;
    size_t total = 0;
    DRV_CHECK(D.cuDriverGetVersion(&ver));
    DRV_CHECK(D.cuDeviceTotalMem(&total, d->dev));
    D.cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, d->dev);
    Dl_info info;
    const char *file = dladdr((void *)D.cuInit, &info) && info.dli_fname ? info.dli_fname : "?";
    printf("{\"kind\": \"device\", \"program\": \"%s\", \"device\": \"%s\", \"simulated\": %s, "
           "\"driver_api_version\": %d, \"total_bytes\": %zu, \"vmm\": %d, \"libcuda\": \"%s\"}\n",
           prog, d->name, d->simulated ? "true" : "false", ver, total, vmm, file);
    fflush(stdout);
}

/* Physical device memory for the VMM calls, read-write access to it, and its
 * allocation granularity. */
struct drv_vmm {
    CUmemAllocationProp prop;
    CUmemAccessDesc acc;
    size_t gran;
};

static inline void drv_vmm_init(struct drv *d, struct drv_vmm *v)
{
    memset(v, 0, sizeof(*v));
    v->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    v->prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    v->prop.location.id = d->dev;
    DRV_CHECK(D.cuMemGetAllocationGranularity(&v->gran, &v->prop,
                                              CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    v->acc.location = v->prop.location;
    v->acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
}

static inline CUfunction drv_fn(struct drv *d, const char *name)
{
    CUfunction f;
    DRV_CHECK(D.cuModuleGetFunction(&f, d->mod, name));
    return f;
}

/* dst[i] = value over count words, a grid-stride kernel. */
static inline void drv_fill(CUfunction fill, CUstream s, CUdeviceptr dst, uint32_t value,
                            uint64_t count, unsigned grid)
{
    void *p[] = { &dst, &value, &count };
    DRV_CHECK(D.cuLaunchKernel(fill, grid, 1, 1, 256, 1, 1, 0, s, p, NULL));
}

/* *out = fingerprint of bytes at data (docs/simulator.md): grid 1, block 1024. */
static inline void drv_fingerprint(CUfunction fp, CUstream s, CUdeviceptr out, CUdeviceptr data,
                                   uint64_t bytes)
{
    void *p[] = { &out, &data, &bytes };
    DRV_CHECK(D.cuLaunchKernel(fp, 1, 1, 1, 1024, 1, 1, 0, s, p, NULL));
}

/* The fingerprint of `bytes` bytes (a multiple of 4) all holding the word v, as
 * bs_fingerprint_u64 computes it. */
static inline uint64_t drv_fingerprint_const(uint32_t v, uint64_t bytes)
{
    uint64_t w = ((uint64_t)v << 32) | v, sum = 0, n = bytes / 8;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t z = w ^ (i * 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        sum += z ^ (z >> 31);
    }
    if (bytes & 7) { /* a last half word: v, zero-padded */
        uint64_t z = (uint64_t)v ^ (n * 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        sum += z ^ (z >> 31);
    }
    return sum + bytes;
}

static int drv_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts them). */
static inline double drv_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), drv_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A size with an optional K/M/G suffix (powers of 1024); 0 when malformed. */
static inline uint64_t drv_parse_size(const char *s)
{
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    switch (*end) {
    case 'K': n <<= 10; end++; break;
    case 'M': n <<= 20; end++; break;
    case 'G': n <<= 30; end++; break;
    default: break;
    }
    return *end ? 0 : n;
}

#endif
