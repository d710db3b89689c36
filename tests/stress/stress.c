/* stress: THREADS threads, each with its own two streams, allocate, copy, launch and
 * free against shared weights while blockswap pages them under a tight VRAM limit.
 * Each thread's work depends only on its seed, so each thread's checksum is the same
 * with or without blockswap, under any scheduling; run.py --compare checks that, and
 * the simulator's report that no operation raced or touched unmapped memory.
 *
 * Per iteration a thread: allocates an input and an output (managed or not, through
 * cuMemAlloc or cuMemAllocAsync on one of its streams), fills the input from pinned
 * memory, runs a chain of gemv/tanh kernels through 2-4 randomly chosen shared
 * weights (alternating its streams, ordered by an event), checksums the result on the
 * device, reads it back and frees both buffers (cuMemFree or cuMemFreeAsync).
 *
 * usage: stress [ITERATIONS [SEED [fork]]]   with "fork", thread 0 forks a child
 * after its first iteration, while the others work; the child runs CUDA work of its
 * own (or fails cleanly) and the parent checks it exited 0. Exit 0: done. */
#include "bs_kernels_ptx.h"

#include <cuda.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 8
#define NW 12
#define DIM 128 /* weights DIM x DIM floats: 64 KiB, managed with BLOCKSWAP_MIN_BYTES=64K */

#define CK(call)                                                               \
    do {                                                                       \
        CUresult r_ = (call);                                                  \
        if (r_ != CUDA_SUCCESS) {                                              \
            const char *n_ = "?";                                              \
            cuGetErrorName(r_, &n_);                                           \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, n_); \
            exit(3);                                                           \
        }                                                                      \
    } while (0)

static CUcontext ctx;
static CUfunction gemv_f, tanh_f, checksum_f;
static CUdeviceptr weights[NW];
static int iterations = 40;
static uint64_t base_seed = 1;
static bool do_fork;

static uint64_t next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fill(float *dst, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ((float)(next(&seed) >> 40) / 16777216.0f - 0.5f) * 0.25f;
}

static CUresult launch(CUfunction f, CUstream s, void **p)
{
    return cuLaunchKernel(f, 1, 1, 1, 64, 1, 1, 0, s, p, NULL);
}

/* A child forked while other threads work: its own context, memory and kernels. */
static int child_work(void)
{
    CUcontext c;
    CUmodule m;
    CUfunction fill_f;
    CUdeviceptr d;
    CUresult r;
    if ((r = cuInit(0)) || (r = cuDevicePrimaryCtxRetain(&c, 0)) || (r = cuCtxSetCurrent(c)) ||
        (r = cuModuleLoadData(&m, bs_kernels_ptx)) ||
        (r = cuModuleGetFunction(&fill_f, m, "bs_fill_u32")) || (r = cuMemAlloc(&d, 256 << 10)))
        return r == CUDA_SUCCESS ? 1 : 0; /* failing cleanly is allowed; crashing is not */
    uint32_t v = 42, out[4];
    uint64_t n = (256 << 10) / 4;
    void *p[] = { &d, &v, &n };
    if ((r = launch(fill_f, NULL, p)) || (r = cuMemcpyDtoH(out, d + 1000 * 4, sizeof(out))))
        return 0;
    if (out[0] != 42 || out[3] != 42)
        return 1; /* a wrong result is not a clean failure */
    cuMemFree(d);
    return 0;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t seed = base_seed * 1000 + (uint64_t)id, hash = 0xcbf29ce484222325ull;
    CK(cuCtxSetCurrent(ctx));
    CUstream s[2];
    CUevent ev;
    CK(cuStreamCreate(&s[0], CU_STREAM_NON_BLOCKING));
    CK(cuStreamCreate(&s[1], CU_STREAM_NON_BLOCKING));
    CK(cuEventCreate(&ev, CU_EVENT_DISABLE_TIMING));
    float *pinned;
    CK(cuMemAllocHost((void **)&pinned, DIM * 4 + 8));

    for (int it = 0; it < iterations; it++) {
        uint64_t choice = next(&seed);
        bool managed = choice & 1, async = choice & 2, async_free = choice & 4;
        size_t bytes = managed ? 64 << 10 : DIM * 4; /* managed: at least BLOCKSWAP_MIN_BYTES */
        CUdeviceptr x, y, sum;
        CUstream a = s[choice >> 3 & 1], b = s[!(choice >> 3 & 1)];
        if (async) {
            CK(cuMemAllocAsync(&x, bytes, a));
            CK(cuMemAllocAsync(&y, bytes, a));
        } else {
            CK(cuMemAlloc(&x, bytes));
            CK(cuMemAlloc(&y, bytes));
        }
        CK(cuMemAllocAsync(&sum, 8, a));
        fill(pinned, DIM, seed);
        CK(cuMemcpyHtoDAsync(x, pinned, DIM * 4, a));
        int hops = 2 + (int)(next(&seed) % 3);
        CUstream cur = a;
        for (int h = 0; h < hops; h++) {
            CUdeviceptr W = weights[next(&seed) % NW], in = h % 2 ? y : x, out = h % 2 ? x : y;
            uint32_t rows = DIM, cols = DIM;
            uint64_t n = DIM;
            void *pg[] = { &out, &W, &in, &rows, &cols };
            void *pt[] = { &out, &n };
            CK(launch(gemv_f, cur, pg));
            CK(launch(tanh_f, cur, pt));
            /* Hand over to the other stream, ordered by an event. */
            CUstream other = cur == a ? b : a;
            CK(cuEventRecord(ev, cur));
            CK(cuStreamWaitEvent(other, ev, 0));
            cur = other;
        }
        CUdeviceptr res = hops % 2 ? y : x;
        uint64_t nbytes = DIM * 4;
        void *pc[] = { &sum, &res, &nbytes };
        CK(launch(checksum_f, cur, pc));
        CK(cuMemcpyDtoHAsync(pinned + DIM, sum, 8, cur));
        CK(cuStreamSynchronize(cur));
        uint64_t v;
        memcpy(&v, pinned + DIM, 8);
        hash = (hash ^ v) * 0x100000001b3ull;
        if (async_free) {
            CK(cuMemFreeAsync(x, cur));
            CK(cuMemFreeAsync(y, cur));
        } else {
            CK(cuMemFree(x));
            CK(cuMemFree(y));
        }
        CK(cuMemFreeAsync(sum, cur));

        if (do_fork && id == 0 && it == 0) {
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0)
                _exit(child_work());
            int st;
            if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
                fprintf(stderr, "the child forked during the stress run did not exit cleanly\n");
                exit(4);
            }
        }
    }
    CK(cuStreamSynchronize(s[0]));
    CK(cuStreamSynchronize(s[1]));
    CK(cuEventDestroy(ev));
    CK(cuStreamDestroy(s[0]));
    CK(cuStreamDestroy(s[1]));
    CK(cuMemFreeHost(pinned));
    return (void *)(uintptr_t)hash;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        iterations = atoi(argv[1]);
    if (argc > 2)
        base_seed = strtoull(argv[2], NULL, 10);
    do_fork = argc > 3 && strcmp(argv[3], "fork") == 0;
    CUmodule mod;
    CK(cuInit(0));
    CK(cuDevicePrimaryCtxRetain(&ctx, 0));
    CK(cuCtxSetCurrent(ctx));
    CK(cuModuleLoadData(&mod, bs_kernels_ptx));
    CK(cuModuleGetFunction(&gemv_f, mod, "bs_gemv_f32"));
    CK(cuModuleGetFunction(&tanh_f, mod, "bs_tanh_f32"));
    CK(cuModuleGetFunction(&checksum_f, mod, "bs_checksum_u64"));
    float *w = malloc(DIM * DIM * 4);
    if (!w)
        return 1;
    for (int i = 0; i < NW; i++) {
        fill(w, DIM * DIM, base_seed * 77 + (uint64_t)i);
        CK(cuMemAlloc(&weights[i], DIM * DIM * 4));
        CK(cuMemcpyHtoD(weights[i], w, DIM * DIM * 4));
    }
    free(w);

    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i))
            return 1;
    for (int i = 0; i < THREADS; i++) {
        void *h;
        pthread_join(t[i], &h);
        printf("thread %d: %d iterations, checksum 0x%016llx\n", i, iterations,
               (unsigned long long)(uintptr_t)h);
    }
    for (int i = 0; i < NW; i++)
        CK(cuMemFree(weights[i]));
    CK(cuModuleUnload(mod));
    CK(cuDevicePrimaryCtxRelease(0));
    return 0;
}
