/* Helpers for the sim and gpu test programs: a context, the built-in kernels, and
 * the blockswap public API looked up at run time (present only when preloaded). */
#ifndef BS_TEST_KIT_H
#define BS_TEST_KIT_H

#define _GNU_SOURCE
#include "blockswap.h"
#include "bs_kernels_ptx.h"
#include "cutest.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

struct kit {
    CUdevice dev;
    CUcontext ctx;
    CUmodule mod;
};

static inline void kit_init(struct kit *k)
{
    CHECK_CU(cuInit(0));
    CHECK_CU(cuDeviceGet(&k->dev, 0));
    CHECK_CU(cuDevicePrimaryCtxRetain(&k->ctx, k->dev));
    CHECK_CU(cuCtxSetCurrent(k->ctx));
    CHECK_CU(cuModuleLoadData(&k->mod, bs_kernels_ptx));
}

static inline CUfunction kit_fn(struct kit *k, const char *name)
{
    CUfunction f;
    CHECK_CU(cuModuleGetFunction(&f, k->mod, name));
    return f;
}

static inline CUresult kit_launch(CUfunction f, CUstream s, void **params)
{
    return cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, s, params, NULL);
}

/* The shim's API, or a failed test when the shim is not loaded. */
#define BS_API_FN(name) ((__typeof__(&name))kit_api(#name))
static inline void *kit_api(const char *name)
{
    void *p = dlsym(RTLD_DEFAULT, name);
    if (!p) {
        fprintf(stderr, "%s not found: is libblockswap.so preloaded?\n", name);
        exit(1);
    }
    return p;
}

static inline int64_t kit_calls(const char *hook)
{
    return BS_API_FN(blockswap_hook_calls)(hook);
}

/* Which shared object defines the code at p: "blockswap", "cuda" or "other". */
static inline const char *kit_owner(void *p)
{
    Dl_info info;
    if (!p || !dladdr(p, &info) || !info.dli_fname)
        return "none";
    if (strstr(info.dli_fname, "libblockswap"))
        return "blockswap";
    if (strstr(info.dli_fname, "libcuda.so"))
        return "cuda";
    return "other";
}

static inline int kit_launch_set(uint64_t *bases, int max)
{
    return BS_API_FN(blockswap_last_launch)(bases, max);
}

static inline int kit_set_has(const uint64_t *bases, int n, CUdeviceptr p)
{
    for (int i = 0; i < n; i++)
        if (bases[i] == (uint64_t)p)
            return 1;
    return 0;
}

#endif
