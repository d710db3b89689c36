/* A kernel or copy touching a reserved but unmapped range fails with
 * CUDA_ERROR_ILLEGAL_ADDRESS, the error is sticky for the context, the host process
 * survives, and stderr names the kernel (or copy) and the address. */
#include "simtest.h"

static CUdeviceptr hole;

static CUdeviceptr half_mapped(void)
{
    CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}};
    const size_t g = 2 << 20;
    CUdeviceptr va;
    CUmemGenericAllocationHandle h;
    CHECK_CU(cuMemAddressReserve(&va, 2 * g, 0, 0, 0));
    CHECK_CU(cuMemCreate(&h, g, &prop, 0));
    CHECK_CU(cuMemMap(va, g, 0, h, 0));
    CUmemAccessDesc acc = {.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0},
                           .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CHECK_CU(cuMemSetAccess(va, g, &acc, 1));
    hole = va + g;
    return va;
}

static void kernel_fault(void)
{
    st_setup();
    CUdeviceptr va = half_mapped(), y = st_alloc(4096), x = st_alloc(4096);
    uint32_t rows = 16, cols = 64;
    st_kernel("bs_fill_u32"); /* looked up now: after the fault every call fails */
    /* W straddles the end of the mapping: its second half is not mapped. */
    CUdeviceptr W = hole - 2048;
    CHECK(st_launch("bs_gemv_f32", NULL, 5, &y, &W, &x, &rows, &cols) == CUDA_ERROR_ILLEGAL_ADDRESS);
    /* Sticky: unrelated calls in the context now fail the same way. */
    CUdeviceptr p;
    CHECK(cuMemAlloc(&p, 4096) == CUDA_ERROR_ILLEGAL_ADDRESS);
    CHECK(cuCtxSynchronize() == CUDA_ERROR_ILLEGAL_ADDRESS);
    CHECK(st_launch("bs_fill_u32", NULL, 3, &va, &rows, &(uint64_t){1}) == CUDA_ERROR_ILLEGAL_ADDRESS);
    fprintf(stderr, "HOLE=0x%llx\n", (unsigned long long)hole);
}

static void copy_fault(void)
{
    st_setup();
    half_mapped();
    char buf[64] = {0};
    CHECK(cuMemcpyHtoD(hole, buf, sizeof(buf)) == CUDA_ERROR_ILLEGAL_ADDRESS);
    CHECK(cuMemcpyDtoH(buf, hole - 8, 16) == CUDA_ERROR_ILLEGAL_ADDRESS);
}

static void no_access_fault(void)
{
    st_setup();
    CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}};
    CUdeviceptr va;
    CUmemGenericAllocationHandle h;
    CHECK_CU(cuMemAddressReserve(&va, 2 << 20, 0, 0, 0));
    CHECK_CU(cuMemCreate(&h, 2 << 20, &prop, 0));
    CHECK_CU(cuMemMap(va, 2 << 20, 0, h, 0));
    /* Mapped, but cuMemSetAccess never called: inaccessible, as on hardware. */
    CHECK(cuMemsetD8(va, 1, 16) == CUDA_ERROR_ILLEGAL_ADDRESS);
}

int main(void)
{
    struct st_child c;
    st_run_child(kernel_fault, NULL, &c);
    CHECK(c.exit_code == 0);
    char *hl = strstr(c.err, "HOLE=");
    CHECK(hl);
    CHECK(strstr(c.err, "cudasim: error: kernel bs_gemv_f32 read of 0x"));
    CHECK(strstr(c.err, "address not mapped"));
    char at[64];
    snprintf(at, sizeof(at), "at %.*s", (int)strcspn(hl + 5, "\n"), hl + 5);
    CHECK(strstr(c.err, at)); /* names the first unmapped byte */
    CHECK(strstr(c.report, "\"illegal_address\": true"));

    st_run_child(copy_fault, NULL, &c);
    CHECK(c.exit_code == 0);
    CHECK(strstr(c.err, "cudasim: error: copy cuMemcpyHtoD_v2 write of 0x"));
    CHECK(strstr(c.err, "address not mapped"));

    st_run_child(no_access_fault, NULL, &c);
    CHECK(c.exit_code == 0);
    CHECK(strstr(c.err, "memset cuMemsetD8_v2 write of 0x"));
    CHECK(strstr(c.err, "cuMemSetAccess"));
    return 0;
}
