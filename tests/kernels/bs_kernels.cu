/* The built-in test kernels as real CUDA C, for the tests and benchmarks only: never
 * linked into libblockswap.so (tests/unit/check-product-kernels.py fails if one is).
 * The simulated driver (src/sim/kernels.c) implements the same names with the same
 * parameter lists and the same arithmetic, so a test gets identical results on the
 * simulator and on a GPU (tanhf aside, see docs/simulator.md). Regenerate
 * bs_kernels_ptx.h with scripts/gen-kernels-ptx.
 *
 * Every kernel uses grid-stride loops, so any launch geometry computes the whole
 * result; the simulator ignores geometry. */
#include <cuda.h>
#include <stdint.h>

/* Summation order is part of the contract: one thread per row, columns in order,
 * float accumulator, each step one fused multiply-add (the simulator uses fmaf). */
static __device__ void gemv_rows(float *y, const float *W, const float *x,
                                 uint32_t rows, uint32_t cols)
{
    for (uint64_t r = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; r < rows;
         r += (uint64_t)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        const float *w = W + r * cols;
        for (uint32_t c = 0; c < cols; c++)
            acc = __fmaf_rn(w[c], x[c], acc);
        y[r] = acc;
    }
}

extern "C" __global__ void bs_fill_u32(uint32_t *dst, uint32_t value, uint64_t count)
{
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < count;
         i += (uint64_t)gridDim.x * blockDim.x)
        dst[i] = value;
}

extern "C" __global__ void bs_gemv_f32(float *y, const float *W, const float *x,
                                       uint32_t rows, uint32_t cols)
{
    gemv_rows(y, W, x, rows, cols);
}

extern "C" __global__ void bs_axpy_f32(float *y, const float *x, float a, uint64_t n)
{
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x)
        y[i] = __fmaf_rn(a, x[i], y[i]);
}

extern "C" __global__ void bs_tanh_f32(float *y, uint64_t n)
{
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x)
        y[i] = tanhf(y[i]);
}

/* 64-bit FNV-1a over the bytes in order: inherently sequential, so one thread. */
extern "C" __global__ void bs_checksum_u64(uint64_t *out, const uint8_t *data, uint64_t bytes)
{
    if (blockIdx.x != 0 || threadIdx.x != 0)
        return;
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < bytes; i++) {
        h ^= data[i];
        h *= 0x100000001b3ull;
    }
    *out = h;
}

/* bs_fingerprint_u64, the kernel libblockswap.so itself loads: its source is the
 * product's, included here so that the tests' module carries it too. */
#include "../../src/kernels/bs_fingerprint.cu"

/* 32 bytes, passed by value: pointers hidden inside a struct parameter. */
struct bs_gemv_args {
    float *y;
    const float *W;
    const float *x;
    uint32_t rows, cols;
};

extern "C" __global__ void bs_gemv_struct_f32(struct bs_gemv_args args)
{
    gemv_rows(args.y, args.W, args.x, args.rows, args.cols);
}

/* ptrs points to device memory holding y, W, x: pointers the host cannot see. */
extern "C" __global__ void bs_gemv_indirect_f32(const uint64_t *ptrs, uint32_t rows, uint32_t cols)
{
    gemv_rows((float *)ptrs[0], (const float *)ptrs[1], (const float *)ptrs[2], rows, cols);
}

/* 2400 bytes of pointers passed by value: more allocations than a launch set holds
 * (BS_LAUNCH_MAX_REFS, 256). Writes value to the first element of each of the first
 * n (at most BS_PTR_LIST_MAX) pointers; the unused slots may be anything. */
#define BS_PTR_LIST_MAX 300
struct bs_ptr_list {
    uint32_t *dst[BS_PTR_LIST_MAX];
};

extern "C" __global__ void bs_fill_list_u32(struct bs_ptr_list list, uint32_t value, uint32_t n)
{
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x;
         i < n && i < BS_PTR_LIST_MAX; i += (uint64_t)gridDim.x * blockDim.x)
        *list.dst[i] = value;
}

extern "C" __global__ void bs_sleep(uint64_t ns)
{
    if (blockIdx.x != 0 || threadIdx.x != 0)
        return;
    uint64_t start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        __nanosleep(1000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
}

/* Fills the global tensor a CUtensorMap describes. The descriptor's layout is private
 * to the driver, so on a GPU the kernel can only use it through TMA (sm_90+): each
 * block stores one box of blockDim.x x blockDim.y elements at box coordinates
 * (blockIdx.x, blockIdx.y); the hardware clips boxes at the tensor's edges. A real-GPU
 * caller must therefore encode a 2-D map with boxDim = {blockDim.x, blockDim.y},
 * launch a grid that covers the tensor, pass blockDim.x * blockDim.y * 4 bytes of
 * dynamic shared memory, and build the PTX for compute_90. The simulator fills the
 * whole tensor for any rank and geometry. */
extern "C" __global__ void bs_fill_tensormap_u32(const __grid_constant__ CUtensorMap map,
                                                 uint32_t value)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) uint32_t tile[];
    unsigned n = blockDim.x * blockDim.y;
    for (unsigned i = threadIdx.y * blockDim.x + threadIdx.x; i < n; i += n)
        tile[i] = value;
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0) {
        int x0 = (int)(blockIdx.x * blockDim.x), y0 = (int)(blockIdx.y * blockDim.y);
        unsigned smem = (unsigned)__cvta_generic_to_shared(tile);
        asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];"
                     :: "l"(&map), "r"(x0), "r"(y0), "r"(smem) : "memory");
        asm volatile("cp.async.bulk.commit_group;" ::: "memory");
        asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
    }
#else
    (void)map;
    (void)value;
    __trap();
#endif
}
