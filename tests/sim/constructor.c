/* sim: a program whose constructor calls hooked functions before main (as some
 * libraries do at load) works under the shim, and those calls are tracked. */
#include "kit.h"

static CUdeviceptr early;
static struct kit k;

__attribute__((constructor)) static void load_time(void)
{
    kit_init(&k);
    CHECK_CU(cuMemAlloc(&early, 65536));
}

int main(void)
{
    struct blockswap_alloc_info info;
    CHECK(BS_API_FN(blockswap_find_allocation)(early + 10, &info) == 0);
    CHECK(info.base == early && info.size == 65536);
    return 0;
}
