/* sim (and gpu): a transformer-like program. L layers of weights are uploaded from
 * pinned memory on a copy stream, then every step runs y = tanh(W x + b) through all
 * layers on a compute stream that waits on the upload events. Prints a checksum of
 * the final activations computed on the device, so runs can be compared exactly.
 * usage: transformer [layers] [dim] [steps] */
#include "kit.h"

#include <stdint.h>

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s;
}

static float rnd(uint32_t *s)
{
    return ((float)(lcg(s) >> 8) / 16777216.0f - 0.5f) * 0.25f;
}

int main(int argc, char **argv)
{
    int layers = argc > 1 ? atoi(argv[1]) : 8;
    uint32_t dim = argc > 2 ? (uint32_t)atoi(argv[2]) : 256;
    int steps = argc > 3 ? atoi(argv[3]) : 3;
    CHECK(layers > 0 && layers <= 256 && dim > 0 && dim <= 8192 && steps > 0);

    struct kit k;
    kit_init(&k);
    CUfunction gemv = kit_fn(&k, "bs_gemv_f32"), axpy = kit_fn(&k, "bs_axpy_f32");
    CUfunction tanh_f = kit_fn(&k, "bs_tanh_f32"), sum = kit_fn(&k, "bs_checksum_u64");
    CUfunction gstruct = kit_fn(&k, "bs_gemv_struct_f32");

    CUstream copy, compute;
    CHECK_CU(cuStreamCreate(&copy, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuStreamCreate(&compute, CU_STREAM_NON_BLOCKING));

    size_t wbytes = (size_t)dim * dim * 4;
    float *host;
    CHECK_CU(cuMemAllocHost((void **)&host, wbytes + dim * 4));
    CUdeviceptr *W = calloc((size_t)layers, sizeof(*W)), *B = calloc((size_t)layers, sizeof(*B));
    CUevent *ready = calloc((size_t)layers, sizeof(*ready));
    CHECK(W && B && ready);
    uint32_t seed = 12345;
    for (int l = 0; l < layers; l++) {
        CHECK_CU(cuMemAlloc(&W[l], wbytes));
        CHECK_CU(cuMemAllocAsync(&B[l], dim * 4, compute));
        for (size_t i = 0; i < (size_t)dim * dim + dim; i++)
            host[i] = rnd(&seed);
        CHECK_CU(cuStreamSynchronize(copy)); /* host buffer reused per layer */
        CHECK_CU(cuMemcpyHtoDAsync(W[l], host, wbytes, copy));
        CHECK_CU(cuMemcpyHtoDAsync(B[l], host + (size_t)dim * dim, dim * 4, copy));
        CHECK_CU(cuEventCreate(&ready[l], CU_EVENT_DEFAULT));
        CHECK_CU(cuEventRecord(ready[l], copy));
    }
    CHECK_CU(cuStreamSynchronize(copy));

    CUdeviceptr x, y, out;
    CHECK_CU(cuMemAlloc(&x, dim * 4));
    CHECK_CU(cuMemAlloc(&y, dim * 4));
    CHECK_CU(cuMemAlloc(&out, 8));
    for (uint32_t i = 0; i < dim; i++)
        host[i] = rnd(&seed);
    CHECK_CU(cuMemcpyHtoD(x, host, dim * 4));

    float one = 1.0f;
    uint64_t n = dim;
    for (int s = 0; s < steps; s++) {
        for (int l = 0; l < layers; l++) {
            CHECK_CU(cuStreamWaitEvent(compute, ready[l], 0));
            if (l % 2) {
                void *p[] = { &y, &W[l], &x, &dim, &dim };
                CHECK_CU(kit_launch(gemv, compute, p));
            } else {
                struct { CUdeviceptr y, W, x; uint32_t rows, cols; } a = { y, W[l], x, dim, dim };
                void *p[] = { &a };
                CHECK_CU(kit_launch(gstruct, compute, p));
            }
            void *pa[] = { &y, &B[l], &one, &n };
            CHECK_CU(kit_launch(axpy, compute, pa));
            void *pt[] = { &y, &n };
            CHECK_CU(kit_launch(tanh_f, compute, pt));
            CUdeviceptr t = x; x = y; y = t;
        }
    }
    uint64_t bytes = dim * 4;
    void *pc[] = { &out, &x, &bytes };
    CHECK_CU(kit_launch(sum, compute, pc));
    uint64_t h;
    CHECK_CU(cuMemcpyDtoHAsync(&h, out, 8, compute));
    CHECK_CU(cuStreamSynchronize(compute));
    printf("layers %d dim %u steps %d checksum 0x%016llx\n", layers, dim, steps,
           (unsigned long long)h);

    for (int l = 0; l < layers; l++) {
        CHECK_CU(cuMemFree(W[l]));
        CHECK_CU(cuMemFreeAsync(B[l], compute));
        CHECK_CU(cuEventDestroy(ready[l]));
    }
    CHECK_CU(cuStreamSynchronize(compute));
    CHECK_CU(cuMemFree(x));
    CHECK_CU(cuMemFree(y));
    CHECK_CU(cuMemFree(out));
    CHECK_CU(cuMemFreeHost(host));
    return 0;
}
