/* Unit: the allocation map finds allocations from any interior address, across
 * chunk boundaries, with many small allocations per chunk, and forgets frees. */
#include "bs.h"
#include "cutest.h"

#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void insert(uint64_t base, uint64_t size)
{
    struct bs_alloc_rec r = { .base = base, .size = size, .api = 1 };
    CHECK(bs_alloc_map_insert(&r) == 0);
}

static bool at(uint64_t addr, uint64_t expect_base)
{
    uint64_t b = 0;
    bool ok = bs_alloc_map_lookup(addr, &b);
    return expect_base ? ok && b == expect_base : !ok;
}

static void interior_addresses_find_their_allocation(void)
{
    uint64_t big = 0x7f0000000000ull; /* 670 MiB, like one WAN block tensor run */
    insert(big, 670ull << 20);
    CHECK(at(big, big));
    CHECK(at(big + 12345, big));
    CHECK(at(big + (670ull << 20) - 1, big));
    CHECK(at(big + (670ull << 20), 0));
    CHECK(at(big - 1, 0));
    struct bs_alloc_rec r;
    CHECK(bs_alloc_map_find(big + 99, &r) == 0 && r.base == big && r.size == 670ull << 20);
    CHECK(bs_alloc_map_remove(big, NULL) == 0);
    CHECK(at(big + 12345, 0));
    CHECK(bs_alloc_map_remove(big, NULL) == -ENOENT);
}

static void many_small_allocations_share_a_chunk(void)
{
    uint64_t base = 0x500000000000ull;
    for (int i = 0; i < 4096; i++)
        insert(base + (uint64_t)i * 512, 256);
    for (int i = 0; i < 4096; i++) {
        CHECK(at(base + (uint64_t)i * 512 + 255, base + (uint64_t)i * 512));
        CHECK(at(base + (uint64_t)i * 512 + 256, 0));
    }
    for (int i = 0; i < 4096; i += 2)
        CHECK(bs_alloc_map_remove(base + (uint64_t)i * 512, NULL) == 0);
    for (int i = 0; i < 4096; i++)
        CHECK(at(base + (uint64_t)i * 512 + 7, i % 2 ? base + (uint64_t)i * 512 : 0));
    uint64_t n, bytes, peak;
    bs_alloc_map_stats(&n, &bytes, &peak);
    CHECK_EQ_U64(n, 2048);
    CHECK_EQ_U64(bytes, 2048 * 256);
    CHECK_EQ_U64(peak, 670ull << 20); /* the high-water mark of the first test */
}

static void high_addresses_and_overlaps(void)
{
    uint64_t hi = 0xfffe000000000000ull;
    insert(hi, 4 << 20);
    CHECK(at(hi + (3 << 20), hi));
    /* A new allocation over a stale record replaces it. */
    insert(hi + (1 << 20), 1 << 20);
    CHECK(at(hi + (1 << 20) + 5, hi + (1 << 20)));
    CHECK(at(hi, 0));
}

static void range_removal_takes_only_mappings_inside(void)
{
    uint64_t va = 0x600000000000ull;
    struct bs_alloc_rec r = { .base = va, .size = 2 << 20, .api = 5 };
    CHECK(bs_alloc_map_insert(&r) == 0);
    r.base = va + (2 << 20);
    CHECK(bs_alloc_map_insert(&r) == 0);
    CHECK_EQ_U64(bs_alloc_map_remove_range(va, 2 << 20, 5), 2 << 20);
    CHECK(at(va + 1, 0));
    CHECK(at(va + (2 << 20) + 1, va + (2 << 20)));
}

/* Readers race with a writer: they must only ever see a right answer or none. */
static int stop; /* atomic: the readers poll it */
static void *reader(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg;
    unsigned long iters = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        uint64_t b;
        for (int i = 0; i < 64; i++) {
            uint64_t a = base + (uint64_t)i * (3 << 20) + 100;
            if (bs_alloc_map_lookup(a, &b) && b != base + (uint64_t)i * (3 << 20)) {
                fprintf(stderr, "wrong base for 0x%llx\n", (unsigned long long)a);
                exit(1);
            }
        }
        iters++;
    }
    return (void *)iters;
}

static void lookups_are_safe_during_updates(void)
{
    uint64_t base = 0x400000000000ull;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, reader, (void *)(uintptr_t)base);
    for (int round = 0; round < 300; round++) {
        for (int i = 0; i < 64; i++)
            insert(base + (uint64_t)i * (3 << 20), (1 << 20) + (uint64_t)round * 4096);
        for (int i = 0; i < 64; i++)
            CHECK(bs_alloc_map_remove(base + (uint64_t)i * (3 << 20), NULL) == 0);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
}

/* A lookup that a writer interrupts must start over. Here the writer is a signal
 * handler on the reading thread, run by a 20 us timer at whatever instruction of the
 * lookup it lands on, that moves one allocation between the two halves of a 2 MiB
 * chunk: [M, M+1M) <-> [M+1M, M+2M), always in the same slot of the same (recycled)
 * bucket. The address M + 512K is in the first or in none; a reader that does not
 * retry can pass the base test on the old slot and read the new one, then answer
 * M + 1M, which lies above the address. (Not under ThreadSanitizer: the handler
 * allocates, which it reports as unsafe in a signal handler.) */
#define MOVE_BASE 0x300000000000ull
static volatile sig_atomic_t moved_high, interrupts;

static void move_allocation(int sig)
{
    (void)sig;
    uint64_t from = moved_high ? MOVE_BASE + (1 << 20) : MOVE_BASE;
    uint64_t to = moved_high ? MOVE_BASE : MOVE_BASE + (1 << 20);
    struct bs_alloc_rec r = { .base = to, .size = 1 << 20, .api = 1 };
    if (bs_alloc_map_remove(from, NULL) != 0 || bs_alloc_map_insert(&r) != 0)
        _exit(1);
    moved_high = !moved_high;
    interrupts++;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void interrupted_lookups_retry(void)
{
#if defined(__SANITIZE_THREAD__)
    return;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
    return;
#endif
#endif
    insert(MOVE_BASE, 1 << 20);
    struct sigaction sa = { .sa_handler = move_allocation }, old;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, &old) == 0);
    struct itimerval tv = { { 0, 20 }, { 0, 20 } }, off = { { 0, 0 }, { 0, 0 } };
    CHECK(setitimer(ITIMER_REAL, &tv, NULL) == 0);
    const uint64_t q = MOVE_BASE + (512 << 10);
    unsigned long bad = 0, lookups = 0;
    double end = now_s() + 2.0;
    while (interrupts < 20000 && !bad) {
        for (int i = 0; i < 4096; i++) {
            uint64_t b = 0;
            if (bs_alloc_map_lookup(q, &b) && b != MOVE_BASE)
                bad++;
        }
        lookups += 4096;
        if (now_s() > end)
            break;
    }
    CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);
    CHECK(sigaction(SIGALRM, &old, NULL) == 0);
    if (bad) {
        fprintf(stderr, "a lookup interrupted by a move answered a base above the address "
                "(%lu of %lu lookups, %d moves)\n", bad, lookups, (int)interrupts);
        exit(1);
    }
    CHECK(bs_alloc_map_remove(moved_high ? MOVE_BASE + (1 << 20) : MOVE_BASE, NULL) == 0);
}

int main(void)
{
    bs_log_set_level(BS_LOG_ERROR);
    interior_addresses_find_their_allocation();
    many_small_allocations_share_a_chunk();
    high_addresses_and_overlaps();
    range_removal_takes_only_mappings_inside();
    lookups_are_safe_during_updates();
    interrupted_lookups_retry();
    bs_alloc_map_reset();
    CHECK(at(0x500000000000ull + 512 + 7, 0));
    return 0;
}
