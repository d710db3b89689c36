#define _GNU_SOURCE /* memmem */
/* Every built-in kernel gives the known result, launched with kernelParams (argv[1]
 * = "params") or with the packed `extra` buffer (argv[1] = "extra"), and
 * cuFuncGetParamInfo reports the natural C layout the packing relies on. */
#include <math.h>

#include "simtest.h"

static int use_extra;

struct param { const void *p; size_t size; };

/* Launches name with its arguments either way; the `extra` buffer is packed at the
 * offsets cuFuncGetParamInfo reports. */
static CUresult launch(const char *name, CUstream s, const struct param *args, int n)
{
    CUfunction f = st_kernel(name);
    if (!use_extra) {
        void *params[8];
        for (int i = 0; i < n; i++)
            params[i] = (void *)args[i].p;
        return cuLaunchKernel(f, 4, 1, 1, 64, 1, 1, 0, s, params, NULL);
    }
    _Alignas(128) unsigned char buf[4096];
    size_t total = 0;
    memset(buf, 0, sizeof(buf));
    for (int i = 0; i < n; i++) {
        size_t off, size;
        CHECK_CU(cuFuncGetParamInfo(f, (size_t)i, &off, &size));
        CHECK(size == args[i].size);
        memcpy(buf + off, args[i].p, size);
        total = off + size;
    }
    void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, buf, CU_LAUNCH_PARAM_BUFFER_SIZE, &total, CU_LAUNCH_PARAM_END};
    /* cuLaunchKernelEx takes the same `extra` form; use it for variety. */
    CUlaunchConfig cfg = {.gridDimX = 2, .gridDimY = 1, .gridDimZ = 1, .blockDimX = 32, .blockDimY = 1,
                          .blockDimZ = 1, .hStream = s};
    return cuLaunchKernelEx(&cfg, f, NULL, extra);
}

#define A(x) {&(x), sizeof(x)}

static void check_layout(void)
{
    size_t off, size;
    CUfunction f = st_kernel("bs_gemv_f32");
    const size_t want[5][2] = {{0, 8}, {8, 8}, {16, 8}, {24, 4}, {28, 4}};
    for (size_t i = 0; i < 5; i++) {
        CHECK_CU(cuFuncGetParamInfo(f, i, &off, &size));
        CHECK_EQ_U64(off, want[i][0]);
        CHECK_EQ_U64(size, want[i][1]);
    }
    CHECK(cuFuncGetParamInfo(f, 5, &off, &size) == CUDA_ERROR_INVALID_VALUE);
    CHECK_CU(cuFuncGetParamInfo(st_kernel("bs_axpy_f32"), 3, &off, &size));
    CHECK_EQ_U64(off, 24);
    CHECK_CU(cuFuncGetParamInfo(st_kernel("bs_gemv_struct_f32"), 0, &off, &size));
    CHECK_EQ_U64(size, 32);
    CHECK_CU(cuFuncGetParamInfo(st_kernel("bs_fill_tensormap_u32"), 1, &off, &size));
    CHECK_EQ_U64(off, 128);
    CHECK_CU(cuFuncGetParamInfo(st_kernel("bs_fill_list_u32"), 2, &off, &size));
    CHECK_EQ_U64(off, 2404);
    const char *name;
    CHECK_CU(cuFuncGetName(&name, f));
    CHECK(strcmp(name, "bs_gemv_f32") == 0);
    CUfunction none;
    CUmodule mod;
    CHECK_CU(cuModuleLoadData(&mod, bs_kernels_ptx));
    CHECK(cuModuleGetFunction(&none, mod, "no_such_kernel") == CUDA_ERROR_NOT_FOUND);
    CHECK_CU(cuModuleUnload(mod));
}

int main(int argc, char **argv)
{
    use_extra = argc > 1 && strcmp(argv[1], "extra") == 0;
    st_setup();
    check_layout();
    CUstream s;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));

    /* bs_fill_u32 */
    enum { N = 1000 };
    CUdeviceptr d = st_alloc(N * 4);
    uint32_t v = 0xdeadbeef, h[N];
    uint64_t count = N;
    struct param fill[] = {A(d), A(v), A(count)};
    CHECK_CU(launch("bs_fill_u32", s, fill, 3));
    CHECK_CU(cuMemcpyDtoHAsync(h, d, sizeof(h), s));
    CHECK_CU(cuStreamSynchronize(s));
    for (int i = 0; i < N; i++)
        CHECK(h[i] == 0xdeadbeef);

    /* bs_gemv_f32, bs_gemv_struct_f32, bs_gemv_indirect_f32: same numbers */
    enum { R = 37, C = 53 };
    float W[R * C], x[C], y[R], want[R];
    for (int i = 0; i < R * C; i++)
        W[i] = (float)((i * 7919) % 1000) / 997.0f - 0.5f;
    for (int c = 0; c < C; c++)
        x[c] = (float)c / 13.0f - 1.0f;
    for (int r = 0; r < R; r++) {
        float acc = 0.0f;
        for (int c = 0; c < C; c++)
            acc = fmaf(W[r * C + c], x[c], acc);
        want[r] = acc;
    }
    CUdeviceptr dW = st_alloc(sizeof(W)), dx = st_alloc(sizeof(x)), dy = st_alloc(sizeof(y));
    CHECK_CU(cuMemcpyHtoD(dW, W, sizeof(W)));
    CHECK_CU(cuMemcpyHtoD(dx, x, sizeof(x)));
    uint32_t rows = R, cols = C;
    struct param gemv[] = {A(dy), A(dW), A(dx), A(rows), A(cols)};
    CHECK_CU(launch("bs_gemv_f32", s, gemv, 5));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(y, dy, sizeof(y)));
    CHECK(memcmp(y, want, sizeof(y)) == 0);

    struct { CUdeviceptr y, W, x; uint32_t rows, cols; } sa = {dy, dW, dx, R, C};
    CHECK(sizeof(sa) == 32);
    CHECK_CU(cuMemsetD32(dy, 0, R));
    struct param gs[] = {A(sa)};
    CHECK_CU(launch("bs_gemv_struct_f32", s, gs, 1));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(y, dy, sizeof(y)));
    CHECK(memcmp(y, want, sizeof(y)) == 0);

    CUdeviceptr ptrs = st_alloc(24), table[3] = {dy, dW, dx};
    CHECK_CU(cuMemcpyHtoD(ptrs, table, sizeof(table)));
    CHECK_CU(cuMemsetD32(dy, 0, R));
    struct param gi[] = {A(ptrs), A(rows), A(cols)};
    CHECK_CU(launch("bs_gemv_indirect_f32", s, gi, 3));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(y, dy, sizeof(y)));
    CHECK(memcmp(y, want, sizeof(y)) == 0);

    /* bs_axpy_f32: y = fmaf(a, x, y) */
    float a = 2.5f, yy[C], wy[C];
    uint64_t n = C;
    for (int i = 0; i < C; i++) {
        yy[i] = (float)i * 0.25f;
        wy[i] = fmaf(a, x[i], yy[i]);
    }
    CUdeviceptr dyy = st_alloc(sizeof(yy));
    CHECK_CU(cuMemcpyHtoD(dyy, yy, sizeof(yy)));
    struct param ax[] = {A(dyy), A(dx), A(a), A(n)};
    CHECK_CU(launch("bs_axpy_f32", s, ax, 4));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(yy, dyy, sizeof(yy)));
    CHECK(memcmp(yy, wy, sizeof(yy)) == 0);

    /* bs_tanh_f32 in place */
    struct param th[] = {A(dyy), A(n)};
    CHECK_CU(launch("bs_tanh_f32", s, th, 2));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(yy, dyy, sizeof(yy)));
    for (int i = 0; i < C; i++)
        CHECK(yy[i] == tanhf(wy[i]));

    /* bs_checksum_u64: FNV-1a of "hello" is 0xa430d84680aabd0b */
    CUdeviceptr data = st_alloc(8), out = st_alloc(8);
    CHECK_CU(cuMemcpyHtoD(data, "hello", 5));
    uint64_t bytes = 5, sum = 0;
    struct param ck[] = {A(out), A(data), A(bytes)};
    CHECK_CU(launch("bs_checksum_u64", s, ck, 3));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(&sum, out, 8));
    CHECK_EQ_U64(sum, 0xa430d84680aabd0bull);

    /* bs_sleep touches nothing */
    uint64_t ns = 1000;
    struct param sl[] = {A(ns)};
    CHECK_CU(launch("bs_sleep", s, sl, 1));

    /* bs_fill_tensormap_u32: a 3-D tensor of 8 x 4 x 3 uint32 inside a larger,
     * padded buffer; the padding must stay untouched. */
    enum { X = 8, Y = 4, Z = 3, ROWP = 16 /* elements per padded row */ };
    size_t tbytes = (size_t)ROWP * Y * Z * 4;
    CUdeviceptr tb = st_alloc(tbytes);
    CHECK_CU(cuMemsetD32(tb, 7, tbytes / 4));
    CUtensorMap map;
    cuuint64_t dims[3] = {X, Y, Z}, strides[2] = {ROWP * 4, (cuuint64_t)ROWP * 4 * Y};
    cuuint32_t box[3] = {8, 4, 1}, es[3] = {1, 1, 1};
    CHECK_CU(cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_UINT32, 3, (void *)tb, dims, strides, box, es,
                                    CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                                    CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    CHECK(memmem(&map, sizeof(map), &tb, sizeof(tb)) == NULL); /* opaque: no plain address */
    uint32_t tv = 0x5a5a5a5a;
    struct param tm[] = {A(map), A(tv)};
    CHECK_CU(launch("bs_fill_tensormap_u32", s, tm, 2));
    CHECK_CU(cuStreamSynchronize(s));
    uint32_t *th_ = malloc(tbytes);
    CHECK_CU(cuMemcpyDtoH(th_, tb, tbytes));
    for (int z = 0; z < Z; z++)
        for (int yv = 0; yv < Y; yv++)
            for (int xv = 0; xv < ROWP; xv++)
                CHECK(th_[(z * Y + yv) * ROWP + xv] == (xv < X ? tv : 7u));
    free(th_);

    /* bs_fill_list_u32: 300 pointers by value; the first n get the value */
    struct { CUdeviceptr dst[300]; } list;
    for (int i = 0; i < 300; i++) {
        list.dst[i] = st_alloc(4);
        CHECK_CU(cuMemsetD32(list.dst[i], 7, 1));
    }
    uint32_t lv = 0xa5a5a5a5, ln = 299;
    struct param fl[] = {A(list), A(lv), A(ln)};
    CHECK_CU(launch("bs_fill_list_u32", s, fl, 3));
    CHECK_CU(cuStreamSynchronize(s));
    for (int i = 0; i < 300; i++) {
        uint32_t got;
        CHECK_CU(cuMemcpyDtoH(&got, list.dst[i], 4));
        CHECK(got == (i < 299 ? lv : 7u));
    }

    CHECK_CU(cuStreamDestroy(s));
    return 0;
}
