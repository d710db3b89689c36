/* Shared by the fuzz targets: each defines LLVMFuzzerTestOneInput (and may define
 * fuzz_init, run once before the first input). Built against libFuzzer with
 * -Dfuzzing=true, and in every build against replay.c, which runs the committed
 * corpus and crash inputs once each as a regression test. */
#ifndef BS_FUZZ_H
#define BS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_init(void);

/* The input as a NUL-terminated string of at most cap - 1 bytes. */
static inline const char *fuzz_cstr(const uint8_t *data, size_t size, char *buf, size_t cap)
{
    size_t n = size < cap - 1 ? size : cap - 1;
    memcpy(buf, data, n);
    buf[n] = '\0';
    return buf;
}

#endif
