/* Fuzz target: splitting BLOCKSWAP_TRACE into a text and a JSON path (with %p
 * expansion). The first byte picks the buffers' capacity, from tiny to ample; the
 * result is refused or fits, NUL-terminated, never more. */
#include "bs.h"
#include "fuzz.h"
#include "trace/trace.h"

#include <stdlib.h>

void fuzz_init(void) {}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char spec[8192], text[4096], json[4096];
    if (!size)
        return 0;
    size_t cap = 1 + (size_t)data[0] * 16;
    if (cap > sizeof(text))
        cap = sizeof(text);
    fuzz_cstr(data + 1, size - 1, spec, sizeof(spec));
    memset(text, 'x', sizeof(text));
    memset(json, 'x', sizeof(json));
    int r = bs_trace_parse_paths(spec, text, cap, json, cap);
    if (r == 0 && (!memchr(text, '\0', cap) || !memchr(json, '\0', cap)))
        abort();
    if (text[cap] != 'x' && cap < sizeof(text))
        abort(); /* written past the capacity it was given */
    return 0;
}
