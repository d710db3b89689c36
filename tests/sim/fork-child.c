/* sim: a child forked after initialisation starts with empty tracking state and
 * can use the shim's API; the parent keeps its state and keeps working. */
#include "kit.h"

#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    struct kit k;
    kit_init(&k);
    CUdeviceptr a, b;
    CHECK_CU(cuMemAlloc(&a, 1 << 20));
    CHECK_CU(cuMemAlloc(&b, 1 << 20));
    struct blockswap_stats st;
    CHECK(BS_API_FN(blockswap_get_stats)(&st) == 0 && st.live_allocations == 2);

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct blockswap_stats cs;
        struct blockswap_alloc_info info;
        if (BS_API_FN(blockswap_get_stats)(&cs) != 0 || cs.live_allocations != 0 ||
            cs.allocs != 0 || BS_API_FN(blockswap_find_allocation)(a, &info) != -ENOENT)
            _exit(1);
        /* A CUDA call in the child either works or fails cleanly; it never crashes. */
        CUdeviceptr c;
        CUresult r = cuMemAlloc(&c, 4096);
        if (r == CUDA_SUCCESS && BS_API_FN(blockswap_find_allocation)(c, &info) != 0)
            _exit(2);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(BS_API_FN(blockswap_get_stats)(&st) == 0 && st.live_allocations == 2);
    CUfunction fill = kit_fn(&k, "bs_fill_u32");
    uint32_t v = 5;
    uint64_t n = 16;
    void *p[] = { &b, &v, &n };
    CHECK_CU(kit_launch(fill, NULL, p));
    uint64_t set[4];
    CHECK(kit_launch_set(set, 4) == 1 && set[0] == b);
    return 0;
}
