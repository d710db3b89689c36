/* Copies and memsets in every supported form move the right bytes: 1-D sync and
 * async in each direction, unified cuMemcpy, 2-D and 3-D with pitches and offsets,
 * D8/D16/D32 and their 2-D forms, the _ptds/_ptsz entry points and per-thread
 * streams, pinned and registered host memory, and host functions in stream order. */
#include "simtest.h"

CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr, const void *, size_t);
CUresult cuMemcpyDtoH_v2_ptds(void *, CUdeviceptr, size_t);
CUresult cuMemsetD32Async_ptsz(CUdeviceptr, unsigned int, size_t, CUstream);
CUresult cuStreamSynchronize_ptsz(CUstream);

static int hostfn_seen;
static void CUDA_CB hostfn(void *p) { hostfn_seen = *(volatile uint8_t *)p; }

int main(void)
{
    st_setup();
    enum { N = 4096 };
    uint8_t src[N], dst[N];
    for (int i = 0; i < N; i++)
        src[i] = (uint8_t)(i * 31 + 7);
    CUdeviceptr a = st_alloc(N), b = st_alloc(N);
    CUstream s;
    CHECK_CU(cuStreamCreate(&s, 0));

    CHECK_CU(cuMemcpyHtoD(a, src, N));
    CHECK_CU(cuMemcpyDtoD(b, a, N));
    memset(dst, 0, N);
    CHECK_CU(cuMemcpyDtoH(dst, b, N));
    CHECK(memcmp(src, dst, N) == 0);

    /* unified */
    CHECK_CU(cuMemsetD8(b, 0, N));
    CHECK_CU(cuMemcpy(b, (CUdeviceptr)(uintptr_t)src, N));
    memset(dst, 0, N);
    CHECK_CU(cuMemcpy((CUdeviceptr)(uintptr_t)dst, b, N));
    CHECK(memcmp(src, dst, N) == 0);

    /* async with pinned memory, and a host function ordered after the copy */
    uint8_t *pin;
    CHECK_CU(cuMemHostAlloc((void **)&pin, N, 0));
    CHECK_CU(cuMemcpyDtoHAsync(pin, a, N, s));
    CHECK_CU(cuLaunchHostFunc(s, hostfn, pin + 1));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK(memcmp(pin, src, N) == 0);
    CHECK(hostfn_seen == src[1]);
    CUdeviceptr dp;
    CHECK_CU(cuMemHostGetDevicePointer(&dp, pin, 0));
    CHECK(dp == (CUdeviceptr)(uintptr_t)pin);
    unsigned mt = 0;
    CHECK_CU(cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)pin));
    CHECK(mt == CU_MEMORYTYPE_HOST);
    CHECK_CU(cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, a));
    CHECK(mt == CU_MEMORYTYPE_DEVICE);
    CHECK_CU(cuMemFreeHost(pin));

    /* registered host memory */
    static uint8_t reg[N] __attribute__((aligned(4096)));
    CHECK_CU(cuMemHostRegister(reg, N, 0));
    CHECK(cuMemHostRegister(reg, N, 0) == CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
    CHECK_CU(cuMemcpyDtoHAsync(reg, a, N, s));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK(memcmp(reg, src, N) == 0);
    CHECK_CU(cuMemHostUnregister(reg));

    /* memsets */
    uint16_t h16[8];
    uint32_t h32[8];
    CHECK_CU(cuMemsetD16(a, 0xabcd, 8));
    CHECK_CU(cuMemcpyDtoH(h16, a, sizeof(h16)));
    CHECK(h16[0] == 0xabcd && h16[7] == 0xabcd);
    CHECK_CU(cuMemsetD32Async(a, 0x01020304, 8, s));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(h32, a, sizeof(h32)));
    CHECK(h32[0] == 0x01020304 && h32[7] == 0x01020304);
    CHECK(cuMemsetD32(a + 2, 0, 1) == CUDA_ERROR_INVALID_VALUE); /* misaligned */

    /* 2-D memset and copy with pitches: 4 rows of 16 bytes in a 64-byte pitch */
    size_t pitch;
    CUdeviceptr m;
    CHECK_CU(cuMemAllocPitch(&m, &pitch, 16, 4, 4));
    CHECK(pitch >= 16);
    CHECK_CU(cuMemsetD8(m, 0xee, pitch * 4));
    CHECK_CU(cuMemsetD2D8(m, pitch, 0x11, 16, 4));
    uint8_t rows[4][64];
    CUDA_MEMCPY2D c2 = {.srcMemoryType = CU_MEMORYTYPE_DEVICE, .srcDevice = m, .srcPitch = pitch,
                        .dstMemoryType = CU_MEMORYTYPE_HOST, .dstHost = rows, .dstPitch = 64,
                        .WidthInBytes = 20, .Height = 4};
    CHECK_CU(cuMemcpy2D(&c2));
    for (int r = 0; r < 4; r++)
        CHECK(rows[r][0] == 0x11 && rows[r][15] == 0x11 && rows[r][16] == 0xee);
    c2.srcXInBytes = 8;
    c2.srcY = 1;
    c2.WidthInBytes = 8;
    c2.Height = 3;
    memset(rows, 0, sizeof(rows));
    CHECK_CU(cuMemcpy2DAsync(&c2, s));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK(rows[0][0] == 0x11 && rows[2][7] == 0x11 && rows[3][0] == 0);

    /* 3-D: 2 slices of 2 rows of 4 bytes, host -> device -> host */
    uint8_t cube[2][2][4], back[2][2][4];
    for (int i = 0; i < 16; i++)
        ((uint8_t *)cube)[i] = (uint8_t)i;
    CUdeviceptr d3 = st_alloc(2 * 4 * 64);
    CUDA_MEMCPY3D c3 = {.srcMemoryType = CU_MEMORYTYPE_HOST, .srcHost = cube, .srcPitch = 4, .srcHeight = 2,
                        .dstMemoryType = CU_MEMORYTYPE_DEVICE, .dstDevice = d3, .dstPitch = 64, .dstHeight = 4,
                        .WidthInBytes = 4, .Height = 2, .Depth = 2};
    CHECK_CU(cuMemcpy3D(&c3));
    CUDA_MEMCPY3D r3 = {.srcMemoryType = CU_MEMORYTYPE_DEVICE, .srcDevice = d3, .srcPitch = 64, .srcHeight = 4,
                        .dstMemoryType = CU_MEMORYTYPE_HOST, .dstHost = back, .dstPitch = 4, .dstHeight = 2,
                        .WidthInBytes = 4, .Height = 2, .Depth = 2};
    CHECK_CU(cuMemcpy3DAsync(&r3, s));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK(memcmp(cube, back, sizeof(cube)) == 0);

    /* per-thread default stream entry points */
    CHECK_CU(cuMemcpyHtoD_v2_ptds(b, src, N));
    CHECK_CU(cuMemsetD32Async_ptsz(b, 0x7f7f7f7f, 4, CU_STREAM_PER_THREAD));
    CHECK_CU(cuStreamSynchronize_ptsz(NULL));
    memset(dst, 0, N);
    CHECK_CU(cuMemcpyDtoH_v2_ptds(dst, b, N));
    CHECK(dst[0] == 0x7f && dst[15] == 0x7f && dst[16] == src[16]);

    CHECK_CU(cuStreamDestroy(s));
    return 0;
}
