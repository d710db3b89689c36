/* A stand-in for comfy-aimdo's C library: the same file name (aimdo.so, no soname)
 * and two of its exported names. It hooks nothing; blockswap must find it by name. */
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))
EXPORT uint64_t get_total_vram_usage(void *devctx);
EXPORT void aimdo_analyze(void *devctx);

uint64_t get_total_vram_usage(void *devctx)
{
    (void)devctx;
    return 0;
}

void aimdo_analyze(void *devctx)
{
    (void)devctx;
}
