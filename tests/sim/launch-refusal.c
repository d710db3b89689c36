/* sim: one launch rule. A launch blockswap cannot follow in full is refused with
 * CUDA_ERROR_OUT_OF_MEMORY while it manages memory, and runs while it manages none;
 * the process and its context go on either way.
 *
 * launch-refusal overflow    bs_fill_list_u32 on 300 distinct allocations, more than
 *                            a launch set holds (256): it runs before any managed
 *                            allocation; once one exists (M, 2 MiB, never written,
 *                            so it has no VRAM) the same kind of launch with M in slot
 *                            299, past the 256 followed, is refused (twice: one log
 *                            line) and nothing is written; with M in slot 0 and 256
 *                            distinct allocations in all it runs and pages M in.
 *                            With BLOCKSWAP_MIN_BYTES above 2M (argv[2] "unmanaged")
 *                            M is not managed and the 300 launch runs.
 * launch-refusal unscannable run with CUDASIM_FAIL=cuFuncGetParamInfo:1+: no layout
 *                            can be read. bs_fill_u32 runs before any managed
 *                            allocation and is refused once M exists.
 *
 * Run under the shim only (it reads blockswap's stats); run.py checks the log line. */
#include "kit.h"

#include <stdint.h>

enum { LIST = 300, FOLLOWED = 256 };

struct ptr_list {
    CUdeviceptr dst[LIST];
};

static CUfunction fill_list;

static CUresult launch_list(const struct ptr_list *l, uint32_t value, uint32_t n)
{
    void *params[] = { (void *)l, &value, &n };
    return kit_launch(fill_list, NULL, params);
}

static uint32_t get_u32(CUdeviceptr p)
{
    uint32_t v;
    CHECK_CU(cuMemcpyDtoH(&v, p, sizeof(v)));
    return v;
}

static void stats(struct blockswap_stats *st)
{
    CHECK(BS_API_FN(blockswap_get_stats)(st) == 0);
}

static void overflow(int managed)
{
    struct kit k;
    kit_init(&k);
    fill_list = kit_fn(&k, "bs_fill_list_u32");
    CUdeviceptr small[LIST];
    for (int i = 0; i < LIST; i++) {
        CHECK_CU(cuMemAlloc(&small[i], 256));
        CHECK_CU(cuMemsetD32(small[i], 7, 1));
    }
    struct ptr_list l;

    /* No managed memory yet: 300 distinct allocations run. */
    for (int i = 0; i < LIST; i++)
        l.dst[i] = small[i];
    CHECK_CU(launch_list(&l, 1, LIST));
    for (int i = 0; i < LIST; i++)
        CHECK(get_u32(small[i]) == 1);
    printf("300 allocations, nothing managed: ran\n");

    CUdeviceptr M;
    CHECK_CU(cuMemAlloc(&M, 2 << 20));
    struct blockswap_stats st;
    stats(&st);
    CHECK(st.managed_allocations == (managed ? 1u : 0u));
    CHECK(BS_API_FN(blockswap_is_resident)(M) == (managed ? 0 : -ENOENT));

    /* 300 distinct, M past the 256 that a launch set holds. */
    l.dst[LIST - 1] = M;
    for (int rep = 0; rep < 2; rep++) {
        CUresult r = launch_list(&l, 2, LIST);
        if (r != (managed ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS)) {
            fprintf(stderr, "launch into 300 allocations returned %d, expected %d\n", (int)r,
                    managed ? (int)CUDA_ERROR_OUT_OF_MEMORY : 0);
            exit(1);
        }
    }
    for (int i = 0; i < LIST - 1; i++)
        CHECK(get_u32(small[i]) == (managed ? 1u : 2u));
    if (managed)
        CHECK(BS_API_FN(blockswap_is_resident)(M) == 0);
    else
        CHECK(get_u32(M) == 2);
    printf("300 allocations, M in slot 299: %s\n", managed ? "refused" : "ran");

    /* 256 distinct with M first: followed in full, so it runs and pages M in. */
    struct ptr_list f;
    memset(&f, 0, sizeof(f));
    f.dst[0] = M;
    for (int i = 1; i < FOLLOWED; i++)
        f.dst[i] = small[i];
    CHECK_CU(launch_list(&f, 3, FOLLOWED));
    CHECK(kit_launch_set(NULL, 0) == FOLLOWED);
    CHECK(get_u32(M) == 3);
    for (int i = 1; i < FOLLOWED; i++)
        CHECK(get_u32(small[i]) == 3);
    CHECK(get_u32(small[FOLLOWED]) == (managed ? 1u : 2u));
    printf("256 allocations with M: ran\n");

    /* The context is intact: an ordinary kernel on M. */
    CUfunction fill = kit_fn(&k, "bs_fill_u32");
    uint32_t v = 4;
    uint64_t count = 1;
    void *fp[] = { &M, &v, &count };
    CHECK_CU(kit_launch(fill, NULL, fp));
    CHECK(get_u32(M) == 4);

    stats(&st);
    CHECK_EQ_U64(st.launches_unscanned, 3); /* the two refused and the first */
    CHECK_EQ_U64(st.launches, 5);
    printf("done\n");
}

static void unscannable(void)
{
    struct kit k;
    kit_init(&k);
    CUfunction fill = kit_fn(&k, "bs_fill_u32");
    CUdeviceptr s, M;
    CHECK_CU(cuMemAlloc(&s, 256));
    uint32_t v = 5;
    uint64_t count = 1;
    void *sp[] = { &s, &v, &count };
    CHECK_CU(kit_launch(fill, NULL, sp)); /* nothing managed: runs unscanned */
    CHECK(get_u32(s) == 5);
    printf("no layout, nothing managed: ran\n");

    CHECK_CU(cuMemAlloc(&M, 2 << 20));
    CHECK(BS_API_FN(blockswap_is_resident)(M) == 0);
    v = 6;
    void *mp[] = { &M, &v, &count };
    for (int rep = 0; rep < 2; rep++) {
        CUresult r = kit_launch(fill, NULL, mp);
        if (r != CUDA_ERROR_OUT_OF_MEMORY) {
            fprintf(stderr, "unscannable launch returned %d, expected %d\n", (int)r,
                    (int)CUDA_ERROR_OUT_OF_MEMORY);
            exit(1);
        }
    }
    CHECK(BS_API_FN(blockswap_is_resident)(M) == 0);
    /* The context is intact: copies work, M reads as never written. */
    CHECK_CU(cuMemsetD32(s, 9, 1));
    CHECK(get_u32(s) == 9);
    CHECK(get_u32(M) == 0);
    struct blockswap_stats st;
    stats(&st);
    CHECK_EQ_U64(st.launches_unscanned, 3); /* the one that ran and the two refused */
    CHECK_EQ_U64(st.launches, 3);
    printf("no layout, M managed: refused\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "overflow") == 0)
        overflow(!(argc > 2 && strcmp(argv[2], "unmanaged") == 0));
    else if (argc > 1 && strcmp(argv[1], "unscannable") == 0)
        unscannable();
    else {
        fprintf(stderr, "usage: launch-refusal overflow [unmanaged] | unscannable\n");
        return 2;
    }
    return 0;
}
