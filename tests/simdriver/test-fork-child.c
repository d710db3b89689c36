/* After fork the child starts as a process that never called cuInit: its calls
 * return CUDA_ERROR_NOT_INITIALIZED until it initialises, and then it works with
 * fresh state (no inherited allocations, full capacity). */
#include "simtest.h"

int main(void)
{
    st_setup();
    CUdeviceptr big = st_alloc(1 << 30);
    size_t fr, tot;
    CHECK_CU(cuMemGetInfo(&fr, &tot));
    CHECK(tot - fr == 1 << 30);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CUdeviceptr p;
        if (cuMemAlloc(&p, 16) != CUDA_ERROR_NOT_INITIALIZED)
            _exit(2);
        st_setup();
        CHECK_CU(cuMemGetInfo(&fr, &tot));
        if (fr != tot)
            _exit(3);
        CHECK(cuMemFree(big) == CUDA_ERROR_INVALID_VALUE);
        uint32_t v = 9;
        uint64_t n = 4;
        p = st_alloc(16);
        CHECK_CU(st_launch("bs_fill_u32", NULL, 3, &p, &v, &n));
        uint32_t h[4];
        CHECK_CU(cuMemcpyDtoH(h, p, 16));
        _exit(h[3] == 9 ? 0 : 4);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The parent is unaffected. */
    CHECK_CU(cuMemFree(big));
    return 0;
}
