/* Fuzz target: the BLOCKSWAP_* parser, what the environment hands the shim. The first
 * byte picks a variable from the table (bs_config_print_help lists them), the rest is
 * its value; the whole input is also tried as NAME=VALUE and as a size. A value is
 * accepted or refused with a message, never anything else. */
#include "bs.h"
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char names[64][64];
static int nnames;

void fuzz_init(void)
{
    FILE *f = tmpfile();
    if (!f)
        abort();
    bs_config_print_help(fileno(f));
    rewind(f);
    char line[1024];
    while (nnames < 64 && fgets(line, sizeof(line), f))
        if (sscanf(line, "%63[A-Z_]", names[nnames]) == 1 && strncmp(line, "BLOCKSWAP_", 10) == 0)
            nnames++;
    fclose(f);
    if (nnames < 5)
        abort(); /* the reference format changed: this target must follow */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[4096], err[256];
    struct bs_config c;
    if (!size)
        return 0;
    const char *value = fuzz_cstr(data + 1, size - 1, buf, sizeof(buf));
    bs_config_defaults(&c);
    int r = bs_config_set(&c, names[data[0] % nnames], value, err, sizeof(err));
    if (r != 0 && r != -EINVAL)
        abort(); /* a known name is never unknown */
    if (r == -EINVAL && !memchr(err, '\0', sizeof(err)))
        abort();

    const char *all = fuzz_cstr(data, size, buf, sizeof(buf));
    char name[128];
    const char *eq = strchr(all, '=');
    if (eq && (size_t)(eq - all) < sizeof(name)) {
        memcpy(name, all, (size_t)(eq - all));
        name[eq - all] = '\0';
        bs_config_defaults(&c);
        bs_config_set(&c, name, eq + 1, err, sizeof(err));
    }
    uint64_t v;
    bs_parse_size(all, &v);
    return 0;
}
