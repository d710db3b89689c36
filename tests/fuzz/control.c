/* Fuzz target: the control socket's protocol, one request line from a client that
 * may send anything. The first byte picks the answer buffer's capacity; the answer is
 * one NUL-terminated JSON line that fits, or an error, never more. */
#include "bs.h"
#include "fuzz.h"

#include <stdlib.h>

void fuzz_init(void) {}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char resp[1 << 16];
    if (!size)
        return 0;
    size_t cap = 64 + (size_t)data[0] * 64;
    memset(resp, 'x', sizeof(resp));
    int n = bs_control_handle_request((const char *)data + 1, size - 1, resp, cap);
    if (n >= 0 && ((size_t)n >= cap || resp[n] != '\0' || (n && resp[n - 1] != '\n')))
        abort();
    if (resp[cap] != 'x')
        abort(); /* written past the capacity it was given */
    return 0;
}
