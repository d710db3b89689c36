/* Helper library for rtld-next: defines probe() and asks for the next definition,
 * as wrapper libraries do with dlsym(RTLD_NEXT, ...). */
#define _GNU_SOURCE
#include <dlfcn.h>

const char *bs_probe(void);
const char *bs_probe_next(void);

const char *bs_probe(void)
{
    return "a";
}

const char *bs_probe_next(void)
{
    const char *(*next)(void) = (const char *(*)(void))dlsym(RTLD_NEXT, "bs_probe");
    return next ? next() : "none";
}
