/* sim: dlsym(RTLD_NEXT, ...) keeps its meaning under the shim: it resolves from the
 * caller's position in the link map, not from libblockswap's. */
#include <stdio.h>
#include <string.h>

const char *bs_probe_next(void);
int bs_next_b_present(void);

int main(void)
{
    if (!bs_next_b_present())
        return 1;
    const char *got = bs_probe_next();
    if (strcmp(got, "b") != 0) {
        fprintf(stderr, "dlsym(RTLD_NEXT) from libnext-a found \"%s\", expected \"b\"\n", got);
        return 1;
    }
    return 0;
}
