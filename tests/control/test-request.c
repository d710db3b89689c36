/* Unit: bs_control_handle_request, the protocol without a socket. Every request, valid
 * or not (overlong, binary, unknown, random bytes), gets exactly one JSON line that fits
 * the buffer; bad ones change nothing. No CUDA here: status, evict and trim answer with
 * empty figures. */
#include "bs.h"
#include "cutest.h"

#include <string.h>

static char resp[1 << 16];

static int ask(const char *req, size_t len)
{
    memset(resp, 0x55, sizeof(resp));
    int n = bs_control_handle_request(req, len, resp, sizeof(resp));
    CHECK(n > 0 && (size_t)n < sizeof(resp));
    CHECK(resp[0] == '{' && resp[n - 1] == '\n' && resp[n] == '\0');
    CHECK(memchr(resp, '\n', (size_t)n - 1) == NULL); /* one line */
    return n;
}

static void refused(const char *req, size_t len, const char *why)
{
    ask(req, len);
    if (strncmp(resp, "{\"ok\":false,\"error\":\"", 21) != 0 || !strstr(resp, why)) {
        fprintf(stderr, "request %.40s: %s", req ? req : "(null)", resp);
        exit(1);
    }
}

int main(void)
{
    bs_config_defaults(&bs_cfg);
    bs_log_set_level(BS_LOG_ERROR);

    ask("status\n", 7);
    CHECK(strncmp(resp, "{\"ok\":true,\"command\":\"status\"", 29) == 0);
    CHECK(strstr(resp, "\"stall_ms\":null") && strstr(resp, "\"stacks\":[]"));
    ask("status", 6); /* the newline is optional */
    ask("ping\n", 5);
    CHECK(strstr(resp, "\"version\":\"" BS_VERSION "\""));
    ask("evict\n", 6);
    CHECK(strstr(resp, "\"evicted\":0") && strstr(resp, "\"resident_bytes\":0"));
    ask("trim\n", 5);
    CHECK(strstr(resp, "\"host_freed_bytes\":0"));
    ask("  set   blocks-to-swap  3 \n", 27);
    CHECK(strstr(resp, "\"blocks_to_swap\":3") && strstr(resp, "when blocks are found"));
    /* No stack yet: the next one found uses it; the configuration stays as it was read. */
    ask("status\n", 7);
    CHECK(strstr(resp, "\"blocks_to_swap_setting\":3"));
    CHECK(bs_cfg.blocks_to_swap == BS_SIZE_AUTO);
    ask("set blocks-to-swap auto\n", 24);
    ask("status\n", 7);
    CHECK(strstr(resp, "\"blocks_to_swap_setting\":\"auto\""));
    /* --stack S: one stack's k; before it is found, it waits for it. */
    ask("set blocks-to-swap 5 --stack 1\n", 31);
    CHECK(strstr(resp, "\"blocks_to_swap\":5,\"stack\":1") &&
          strstr(resp, "when that stack is found"));
    ask("set blocks-to-swap 6 --stack 0\n", 31);
    ask("status\n", 7);
    CHECK(strstr(resp, "\"blocks_to_swap_setting\":6")); /* the next found is stack 0 */
    ask("set blocks-to-swap auto\n", 24); /* every stack: replaces the per-stack ones */
    CHECK(strstr(resp, "\"stack\":\"all\""));
    ask("status\n", 7);
    CHECK(strstr(resp, "\"blocks_to_swap_setting\":\"auto\""));
    /* set prefetch: blocks ahead, 0 to 63, the window one more; the default is 1. */
    ask("status\n", 7);
    CHECK(strstr(resp, "\"prefetch_setting\":1,\"prefetch_pending\":null"));
    ask("set prefetch 0\n", 15);
    CHECK(strstr(resp, "\"prefetch\":0,\"window\":1") && strstr(resp, "when blocks are found"));
    ask("status\n", 7);
    CHECK(strstr(resp, "\"prefetch_setting\":0"));
    ask("set prefetch 63\n", 16);
    CHECK(strstr(resp, "\"prefetch\":63,\"window\":64"));
    ask("set prefetch 1\n", 15);
    CHECK(bs_cfg.prefetch == 1);
    /* set vram-limit: needs page/ set up (the first managed allocation): not here. */
    refused("set vram-limit 1G", 17, "no VRAM limit yet");

    refused(NULL, 0, "empty");
    refused("", 0, "empty");
    refused("\n", 1, "empty");
    refused("   ", 3, "empty");
    refused("status\r\n", 8, "printable ASCII");
    refused("stat\0us\n", 8, "printable ASCII");
    refused("\xff\xfe", 2, "printable ASCII");
    refused("status\n\n", 8, "printable ASCII");
    refused("status now", 10, "unknown request");
    refused("set blocks-to-swap", 18, "unknown request");
    refused("set blocks-to-swap -1", 21, "bad value");
    refused("set blocks-to-swap 100001", 25, "bad value");
    refused("set blocks-to-swap 18446744073709551616", 39, "bad value");
    refused("set prefetch", 12, "unknown request");
    refused("set prefetch 64", 15, "bad value for prefetch; accepted: a whole number from 0 to 63");
    refused("set prefetch -1", 15, "bad value for prefetch");
    refused("set prefetch auto", 17, "bad value for prefetch");
    refused("set vram-limit 0", 16, "vram-limit 0 leaves no VRAM at all");
    refused("set vram-limit 0G", 17, "vram-limit 0 leaves no VRAM at all");
    refused("set vram-limit 1M", 17, "bad value for vram-limit; accepted: a size from 2M");
    refused("set vram-limit auto", 19, "bad value for vram-limit");
    refused("set vram-limit 12X", 18, "bad value for vram-limit");
    refused("set window 2", 12, "unknown setting; known: blocks-to-swap, prefetch, vram-limit");
    refused("a b c d e f", 11, "too many words");
    refused("set blocks-to-swap 3 --stack", 28, "unknown request");
    refused("set blocks-to-swap 3 --stak 1", 29, "unknown request");
    refused("set blocks-to-swap 3 --stack 16", 31, "bad value for --stack; accepted: a stack index from 0 to 15");
    refused("set blocks-to-swap 3 --stack -1", 31, "bad value for --stack");
    refused("set blocks-to-swap 3 --stack 1x", 31, "bad value for --stack");
    refused("set blocks-to-swap 3,4", 22, "one value; for one model's stack, add --stack S");
    refused("set prefetch 3 --stack 1", 24, "--stack applies to blocks-to-swap only");
    char big[4096];
    memset(big, 'a', sizeof(big));
    refused(big, 256, "too long");
    refused(big, sizeof(big), "too long");
    ask(big, 255); /* 255 bytes is allowed: an unknown one */
    CHECK(strstr(resp, "unknown request"));
    CHECK(bs_cfg.blocks_to_swap == BS_SIZE_AUTO); /* no bad request changed it */
    ask("status\n", 7);
    CHECK(strstr(resp, "\"prefetch_setting\":1,"));

    /* A buffer too small for the answer gets a short error, or nothing at all. */
    char small[48];
    CHECK(bs_control_handle_request("status", 6, small, sizeof(small)) == -ENOSPC);
    char mid[100];
    int n = bs_control_handle_request("status", 6, mid, sizeof(mid));
    CHECK(n > 0 && strstr(mid, "answer too long"));

    /* Random bytes: always one line of JSON-shaped answer, never a crash. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)(x % 300);
        for (size_t j = 0; j < len; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* Mostly printable, so that some requests get as far as the words. */
            big[j] = (char)(x % 5 ? ' ' + x % 95 : x);
        }
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ask(big, len);
    }
    printf("all requests answered with one JSON line\n");
    return 0;
}
