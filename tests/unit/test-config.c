/* Unit: strict parsing of BLOCKSWAP_* values, defaults, and the one-line message. */
#include "bs.h"
#include "cutest.h"

#include <string.h>

static void sizes_parse_with_1024_suffixes(void)
{
    uint64_t v;
    CHECK(bs_parse_size("0", &v) == 0 && v == 0);
    CHECK(bs_parse_size("4096", &v) == 0 && v == 4096);
    CHECK(bs_parse_size("4K", &v) == 0 && v == 4096);
    CHECK(bs_parse_size("3M", &v) == 0 && v == 3ull << 20);
    CHECK(bs_parse_size("24G", &v) == 0 && v == 24ull << 30);
    CHECK(bs_parse_size("24GiB", &v) == 0 && v == 24ull << 30);
    CHECK(bs_parse_size("24GB", &v) == 0 && v == 24ull << 30);
    CHECK(bs_parse_size("2t", &v) == 0 && v == 2ull << 40);
}

static void sizes_reject_anything_else(void)
{
    uint64_t v = 7;
    const char *bad[] = { "", "G", "-1", " 4G", "4G ", "4.5G", "4X", "4GG", "0x10",
                          "18446744073709551616", "17179869184G", "4iB" };
    for (unsigned i = 0; i < BS_ARRAY_SIZE(bad); i++) {
        if (bs_parse_size(bad[i], &v) == 0) {
            fprintf(stderr, "accepted bad size \"%s\"\n", bad[i]);
            exit(1);
        }
    }
    CHECK(v == 7);
}

static void defaults_come_from_the_table(void)
{
    struct bs_config c;
    bs_config_defaults(&c);
    CHECK(!c.disable);
    CHECK(c.log_level == BS_LOG_INFO);
    CHECK(c.log_file[0] == 0);
    CHECK(c.scan_limit == 32768);
    CHECK(c.staging_size == 128ull << 20);
    CHECK(c.file_backing);
}

/* The staging ring: at least 2 MiB (below that its chunks are too small to keep a copy
 * engine busy), at most 4 GiB of pinned memory. */
static void staging_size_is_bounded(void)
{
    struct bs_config c;
    char err[200];
    bs_config_defaults(&c);
    CHECK(bs_config_set(&c, "BLOCKSWAP_STAGING_SIZE", "1M", err, sizeof(err)) == -EINVAL);
    CHECK(strstr(err, "2M to 4G") != NULL);
    CHECK(bs_config_set(&c, "BLOCKSWAP_STAGING_SIZE", "5G", err, sizeof(err)) == -EINVAL);
    CHECK(bs_config_set(&c, "BLOCKSWAP_STAGING_SIZE", "32M", err, sizeof(err)) == 0 &&
          c.staging_size == 32ull << 20);
    CHECK(bs_config_set(&c, "BLOCKSWAP_FILE_BACKING", "0", err, sizeof(err)) == 0 &&
          !c.file_backing);
}

static void bad_values_are_named_with_what_is_accepted(void)
{
    struct bs_config c;
    char err[200];
    bs_config_defaults(&c);
    CHECK(bs_config_set(&c, "BLOCKSWAP_LOG_LEVEL", "loud", err, sizeof(err)) == -EINVAL);
    CHECK(strstr(err, "error, warn, info, debug") != NULL);
    CHECK(c.placement == BS_PLACEMENT_SPREAD);
    CHECK(bs_config_set(&c, "BLOCKSWAP_SWAP_PLACEMENT", "middle", err, sizeof(err)) == -EINVAL);
    CHECK(strstr(err, "accepted: spread, last") != NULL && c.placement == BS_PLACEMENT_SPREAD);
    CHECK(bs_config_set(&c, "BLOCKSWAP_SWAP_PLACEMENT", "last", err, sizeof(err)) == 0 &&
          c.placement == BS_PLACEMENT_LAST);
    c.placement = BS_PLACEMENT_SPREAD;
    CHECK(bs_config_set(&c, "BLOCKSWAP_DISABLE", "2", err, sizeof(err)) == -EINVAL);
    CHECK(bs_config_set(&c, "BLOCKSWAP_SCAN_LIMIT", "2M", err, sizeof(err)) == -EINVAL);
    CHECK(strstr(err, "0 to 1M") != NULL);
    /* Counts: whole numbers within the range, the bounds included. */
    /* BLOCKSWAP_PREFETCH counts blocks ahead (the window is one more): 1 by default, 0
     * (no look-ahead) to 63. */
    CHECK(c.prefetch == 1);
    CHECK(bs_config_set(&c, "BLOCKSWAP_PREFETCH", "64", err, sizeof(err)) == -EINVAL);
    CHECK(strstr(err, "a whole number from 0 to 63") != NULL && c.prefetch == 1);
    CHECK(bs_config_set(&c, "BLOCKSWAP_PREFETCH", "-1", err, sizeof(err)) == -EINVAL);
    CHECK(bs_config_set(&c, "BLOCKSWAP_PREFETCH", "0", err, sizeof(err)) == 0 && c.prefetch == 0);
    CHECK(bs_config_set(&c, "BLOCKSWAP_PREFETCH", "63", err, sizeof(err)) == 0 &&
          c.prefetch == 63);
    c.prefetch = 1;
    CHECK(bs_config_set(&c, "BLOCKSWAP_BLOCKS_TO_SWAP", "100001", err, sizeof(err)) == -EINVAL);
    CHECK(c.blocks_to_swap == BS_SIZE_AUTO);
    /* BLOCKSWAP_BLOCKS_TO_SWAP: one value for every stack, or a list, one per stack in
     * the order found, the last for stacks past its end; auto allowed in it. */
    CHECK(bs_config_blocks_to_swap(&c, 0) == BS_SIZE_AUTO && bs_config_blocks_to_swap(&c, 9) == BS_SIZE_AUTO);
    CHECK(bs_config_set(&c, "BLOCKSWAP_BLOCKS_TO_SWAP", "12", err, sizeof(err)) == 0);
    CHECK(c.blocks_to_swap == 12 && bs_config_blocks_to_swap(&c, 0) == 12 &&
          bs_config_blocks_to_swap(&c, 5) == 12);
    CHECK(bs_config_set(&c, "BLOCKSWAP_BLOCKS_TO_SWAP", "10,auto,3", err, sizeof(err)) == 0);
    CHECK(c.blocks_to_swap == 10 && c.blocks_to_swap_n == 3);
    CHECK(bs_config_blocks_to_swap(&c, 0) == 10 && bs_config_blocks_to_swap(&c, 1) == BS_SIZE_AUTO &&
          bs_config_blocks_to_swap(&c, 2) == 3 && bs_config_blocks_to_swap(&c, 3) == 3 &&
          bs_config_blocks_to_swap(&c, 100) == 3);
    /* A bad item names its position; the setting stays as it was. */
    static const struct { const char *v, *want; } bad[] = {
        { "10,x", "item 2 (\"x\"): accepted: auto or a whole number from 0 to 100000" },
        { "10,,3", "item 2 (empty): accepted:" },
        { ",4", "item 1 (empty): accepted:" },
        { "4,", "item 2 (empty): accepted:" },
        { "100001,2", "item 1 (\"100001\"): accepted:" },
        { "1,2,-3", "item 3 (\"-3\"): accepted:" },
        { "4, 5", "item 2 (\" 5\"): accepted:" },
        { "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", "accepted: at most 16 values" },
        { "abc", "accepted: auto or a whole number from 0 to 100000" },
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK(bs_config_set(&c, "BLOCKSWAP_BLOCKS_TO_SWAP", bad[i].v, err, sizeof(err)) == -EINVAL);
        if (!strstr(err, bad[i].want)) {
            fprintf(stderr, "%s: %s\n", bad[i].v, err);
            CHECK(0);
        }
        CHECK(c.blocks_to_swap == 10 && c.blocks_to_swap_n == 3 && bs_config_blocks_to_swap(&c, 2) == 3);
    }
    CHECK(bs_config_set(&c, "BLOCKSWAP_BLOCKS_TO_SWAP", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
                        err, sizeof(err)) == 0 && bs_config_blocks_to_swap(&c, 15) == 16);
    CHECK(bs_config_set(&c, "BLOCKSWAP_BLOCKS_TO_SWAP", "auto", err, sizeof(err)) == 0);
    CHECK(c.blocks_to_swap_n == 1 && bs_config_blocks_to_swap(&c, 3) == BS_SIZE_AUTO);
    CHECK(bs_config_set(&c, "BLOCKSWAP_NOPE", "1", err, sizeof(err)) == -ENOENT);
    CHECK(c.log_level == BS_LOG_INFO && !c.disable && c.scan_limit == 32768);
    CHECK(bs_config_set(&c, "BLOCKSWAP_DISABLE", "yes", err, sizeof(err)) == 0 && c.disable);
    CHECK(bs_config_set(&c, "BLOCKSWAP_LOG_LEVEL", "debug", err, sizeof(err)) == 0);
    CHECK(c.log_level == BS_LOG_DEBUG);
}

static void load_counts_bad_values_from_the_environment(void)
{
    struct bs_config c;
    bs_log_set_level(BS_LOG_ERROR);
    bs_config_defaults(&c);
    setenv("BLOCKSWAP_SCAN_LIMIT", "12 K", 1);
    setenv("BLOCKSWAP_LOG_LEVEL", "warn", 1);
    CHECK(bs_config_load(&c) == 1);
    CHECK(c.scan_limit == 32768);
    CHECK(c.log_level == BS_LOG_WARN);
    setenv("BLOCKSWAP_SCAN_LIMIT", "12K", 1);
    CHECK(bs_config_load(&c) == 0 && c.scan_limit == 12288);
}

int main(void)
{
    sizes_parse_with_1024_suffixes();
    sizes_reject_anything_else();
    defaults_come_from_the_table();
    bad_values_are_named_with_what_is_accepted();
    load_counts_bad_values_from_the_environment();
    staging_size_is_bounded();
    return 0;
}
