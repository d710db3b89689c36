/* sim: managed memory that captured work points into stays resident while the graph
 * can run: after capture, memory pressure evicts other allocations, never the graph's,
 * and cuGraphLaunch computes the right result. Run with BLOCKSWAP_VRAM_LIMIT=13M. */
#include "kit.h"

int main(void)
{
    struct kit k;
    kit_init(&k);
    CUstream s;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUdeviceptr a, others[4];
    CHECK_CU(cuMemAlloc(&a, 4 << 20));
    for (int i = 0; i < 4; i++)
        CHECK_CU(cuMemAlloc(&others[i], 4 << 20));
    CUfunction fill = kit_fn(&k, "bs_fill_u32"), axpy = kit_fn(&k, "bs_axpy_f32");
    uint32_t one = 0x3f800000; /* 1.0f */
    uint64_t n = (4 << 20) / 4;
    void *fp[] = { &a, &one, &n };
    CHECK_CU(kit_launch(fill, s, fp));
    CHECK_CU(cuStreamSynchronize(s));

    /* Captured: a += 1.0 * others[0] (others[0] is filled with 2.0 first). */
    uint32_t two = 0x40000000;
    void *f0[] = { &others[0], &two, &n };
    CHECK_CU(kit_launch(fill, s, f0));
    CHECK_CU(cuStreamSynchronize(s));
    CUgraph g;
    CUgraphExec ge;
    CHECK_CU(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
    float w = 1.0f;
    void *ap[] = { &a, &others[0], &w, &n };
    CHECK_CU(kit_launch(axpy, s, ap));
    CHECK_CU(cuStreamEndCapture(s, &g));
    CHECK_CU(cuGraphInstantiateWithFlags(&ge, g, 0));

    /* Pressure: the three other allocations take turns in the remaining room. */
    for (int round = 0; round < 3; round++)
        for (int i = 1; i < 4; i++) {
            void *p[] = { &others[i], &one, &n };
            CHECK_CU(kit_launch(fill, s, p));
        }
    CHECK(BS_API_FN(blockswap_is_resident)(a) == 1);
    CHECK(BS_API_FN(blockswap_is_resident)(others[0]) == 1);

    for (int i = 0; i < 3; i++)
        CHECK_CU(cuGraphLaunch(ge, s));
    CHECK_CU(cuStreamSynchronize(s));
    float back[2];
    CHECK_CU(cuMemcpyDtoH(back, a + 1000, sizeof(back)));
    CHECK(back[0] == 7.0f && back[1] == 7.0f); /* 1 + 3 * 2 */
    struct blockswap_stats st;
    CHECK(BS_API_FN(blockswap_get_stats)(&st) == 0 && st.evictions >= 3 && st.graph_launches == 3);
    CHECK_CU(cuGraphExecDestroy(ge));
    CHECK_CU(cuGraphDestroy(g));
    printf("graph ok\n");
    return 0;
}
