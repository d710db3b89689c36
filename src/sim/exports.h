/* Declares every export in exports.def with its cudaTypedefs.h PFN type, so a
 * definition (driver.c) or table entry (proc.c) whose signature differs from the PFN
 * of the version it is registered under does not compile. Default visibility here
 * carries over to the definitions; everything else in the library is hidden. */
#ifndef CUDASIM_EXPORTS_H
#define CUDASIM_EXPORTS_H

#include "sim.h"

#define SIM_API(base, ver, sym, var) \
    extern __attribute__((visibility("default"))) __typeof__(*(PFN_##base##_v##ver##var)0) sym;
#include "exports.def"
#undef SIM_API

#endif
