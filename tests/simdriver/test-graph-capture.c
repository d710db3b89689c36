/* Stream capture records kernels, memsets and copies instead of running them; the
 * instantiated graph replays them in order on the launch stream, each time. */
#include "simtest.h"

enum { N = 256 };

int main(void)
{
    st_setup();
    CUstream s;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUdeviceptr x = st_alloc(N * 4), y = st_alloc(N * 4);
    float ones[N], host[N];
    for (int i = 0; i < N; i++)
        ones[i] = 1.0f;
    CHECK_CU(cuMemcpyHtoD(x, ones, sizeof(ones)));
    CHECK_CU(cuMemsetD32(y, 0, N));
    CHECK_CU(cuCtxSynchronize());

    CUstreamCaptureStatus st;
    CHECK_CU(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
    CHECK_CU(cuStreamIsCapturing(s, &st));
    CHECK(st == CU_STREAM_CAPTURE_STATUS_ACTIVE);
    /* y = 2 (memset of the float bit pattern), then y += 3 * x, then copy to x. */
    float two = 2.0f, a = 3.0f;
    uint32_t two_bits;
    memcpy(&two_bits, &two, 4);
    uint64_t n = N;
    CHECK_CU(cuMemsetD32Async(y, two_bits, N, s));
    CHECK_CU(st_launch("bs_axpy_f32", s, 4, &y, &x, &a, &n));
    CHECK_CU(cuMemcpyDtoDAsync(x, y, N * 4, s));
    CHECK(cuStreamSynchronize(s) == CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    CUgraph g;
    CHECK_CU(cuStreamEndCapture(s, &g));
    CHECK_CU(cuStreamIsCapturing(s, &st));
    CHECK(st == CU_STREAM_CAPTURE_STATUS_NONE);

    /* Nothing ran during capture. */
    CHECK_CU(cuMemcpyDtoH(host, y, sizeof(host)));
    for (int i = 0; i < N; i++)
        CHECK(host[i] == 0.0f);

    CUgraphExec ge;
    CHECK_CU(cuGraphInstantiateWithFlags(&ge, g, 0));
    CHECK_CU(cuGraphLaunch(ge, s));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(host, x, sizeof(host)));
    for (int i = 0; i < N; i++)
        CHECK(host[i] == 5.0f); /* 2 + 3 * 1 */
    CHECK_CU(cuGraphLaunch(ge, s));
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(host, x, sizeof(host)));
    for (int i = 0; i < N; i++)
        CHECK(host[i] == 17.0f); /* 2 + 3 * 5 */
    CHECK_CU(cuGraphExecDestroy(ge));
    CHECK_CU(cuGraphDestroy(g));
    return 0;
}
