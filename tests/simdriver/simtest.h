/* Helpers for the simulator's own tests: context setup, the built-in kernels from
 * the committed PTX, launching with kernelParams or `extra`, and running a scenario
 * in a forked child with its own CUDASIM_* environment, capturing its stderr and
 * its CUDASIM_REPORT JSON. */
#ifndef SIMTEST_H
#define SIMTEST_H

#include <cuda.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bs_kernels_ptx.h"
#include "cutest.h"

static inline CUcontext st_setup(void)
{
    CUdevice dev;
    CUcontext ctx;
    CHECK_CU(cuInit(0));
    CHECK_CU(cuDeviceGet(&dev, 0));
    CHECK_CU(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK_CU(cuCtxSetCurrent(ctx));
    return ctx;
}

/* Looked up once per name: after a fault every driver call fails, lookups too. */
static inline CUfunction st_kernel(const char *name)
{
    static CUmodule mod;
    static struct { const char *name; CUfunction f; } cache[16];
    int i = 0;
    for (; i < 16 && cache[i].name; i++)
        if (strcmp(cache[i].name, name) == 0)
            return cache[i].f;
    CHECK(i < 16);
    if (!mod)
        CHECK_CU(cuModuleLoadData(&mod, bs_kernels_ptx));
    CHECK_CU(cuModuleGetFunction(&cache[i].f, mod, name));
    cache[i].name = name;
    return cache[i].f;
}

/* Launches with kernelParams built from the argument pointers given. */
static inline CUresult st_launch(const char *name, CUstream s, int nargs, ...)
{
    void *params[8];
    va_list ap;
    va_start(ap, nargs);
    for (int i = 0; i < nargs; i++)
        params[i] = va_arg(ap, void *);
    va_end(ap);
    return cuLaunchKernel(st_kernel(name), 1, 1, 1, 128, 1, 1, 0, s, params, NULL);
}

static inline CUdeviceptr st_alloc(size_t n)
{
    CUdeviceptr p;
    CHECK_CU(cuMemAlloc(&p, n));
    return p;
}

struct st_child {
    int exit_code;
    char err[65536];
    char report[16384];
};

/* Runs fn in a child whose environment has the given NAME=VALUE strings (NULL
 * terminated) plus CUDASIM_REPORT pointing at a temporary file. The child must not
 * have touched the driver before: call this before cuInit in the parent. */
static inline void st_run_child(void (*fn)(void), const char *const *env, struct st_child *res)
{
    char path[] = "/tmp/cudasim-test-report-XXXXXX";
    int fd = mkstemp(path), pfd[2];
    CHECK(fd >= 0 && pipe(pfd) == 0);
    close(fd);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (; env && *env; env++) {
            char kv[256];
            snprintf(kv, sizeof(kv), "%s", *env);
            char *eq = strchr(kv, '=');
            *eq = '\0';
            setenv(kv, eq + 1, 1);
        }
        setenv("CUDASIM_REPORT", path, 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        fn();
        exit(0);
    }
    close(pfd[1]);
    memset(res, 0, sizeof(*res));
    size_t n = 0;
    ssize_t got;
    while ((got = read(pfd[0], res->err + n, sizeof(res->err) - 1 - n)) > 0)
        n += (size_t)got;
    close(pfd[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    res->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t r = fread(res->report, 1, sizeof(res->report) - 1, f);
        res->report[r] = '\0';
        fclose(f);
    }
    unlink(path);
    if (res->exit_code != 0)
        fprintf(stderr, "child failed (%d); its stderr:\n%s\n", res->exit_code, res->err);
}

/* The number after "key": in the report, or -1. */
static inline long long st_report_num(const char *json, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    const char *p = strstr(json, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

#endif
