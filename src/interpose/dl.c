/* interpose/dl.c: the exported dlsym and dlvsym, and the real ones behind them.
 * libcudart finds the driver with dlsym(handle, "cuGetProcAddress_v2"), so this is
 * where interception begins. Owns nothing but the two real function pointers. */
#define _GNU_SOURCE
#include "bs.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>

/* Filled on first use; read by the assembly stubs below. */
__attribute__((visibility("hidden"))) void *bs_libc_dlsym;
__attribute__((visibility("hidden"))) void *bs_libc_dlvsym;

/* Sanitizer runtimes call dlsym from their own initialisation, before the shadow
 * memory that instrumented code needs exists: the lookup path stays uninstrumented. */
#define EARLY __attribute__((no_sanitize("address", "undefined", "thread")))

/* glibc relocates most d_ptr entries in place; some ports leave them relative. */
EARLY static uintptr_t dyn_ptr(uintptr_t base, uintptr_t p)
{
    return p < base ? p + base : p;
}

EARLY static size_t gnu_hash_symbol_count(const uint32_t *gh)
{
    uint32_t nbuckets = gh[0], symoffset = gh[1], bloom_size = gh[2];
    const uint32_t *buckets = gh + 4 + bloom_size * (sizeof(ElfW(Addr)) / 4);
    const uint32_t *chain = buckets + nbuckets;
    uint32_t last = 0;
    for (uint32_t i = 0; i < nbuckets; i++)
        if (buckets[i] > last)
            last = buckets[i];
    if (last < symoffset)
        return symoffset;
    while (!(chain[last - symoffset] & 1))
        last++;
    return last + 1;
}

/* Looks `name` up in one object's dynamic symbol table: defined functions whose
 * version is the default one (or unversioned). */
EARLY static void *lookup_in_object(uintptr_t base, const ElfW(Dyn) *dyn, const char *name)
{
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const uint16_t *versym = NULL;
    size_t nsyms = 0;
    for (; dyn && dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = (const ElfW(Sym) *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_STRTAB: strtab = (const char *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_VERSYM: versym = (const uint16_t *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_HASH: nsyms = ((const uint32_t *)dyn_ptr(base, dyn->d_un.d_ptr))[1]; break;
        case DT_GNU_HASH:
            if (!nsyms)
                nsyms = gnu_hash_symbol_count((const uint32_t *)dyn_ptr(base, dyn->d_un.d_ptr));
            break;
        }
    }
    if (!symtab || !strtab)
        return NULL;
    for (size_t i = 0; i < nsyms; i++) {
        const ElfW(Sym) *sym = &symtab[i];
        if (sym->st_shndx == SHN_UNDEF || ELF64_ST_TYPE(sym->st_info) != STT_FUNC)
            continue;
        if (versym && (versym[i] & 0x8000)) /* hidden: not the default version */
            continue;
        const char *a = strtab + sym->st_name, *b = name;
        while (*a && *a == *b)
            a++, b++;
        if (*a == *b)
            return (void *)(base + sym->st_value);
    }
    return NULL;
}

extern ElfW(Dyn) _DYNAMIC[];

/* What RTLD_NEXT would give libblockswap, found without calling anything: dlsym is
 * ours, and functions such as dl_iterate_phdr may be intercepted by runtimes (the
 * sanitizers) that call our dlsym before they are initialised. The dynamic linker's
 * list of loaded objects, in load order, is plain memory. */
EARLY static void *next_definition(const char *name)
{
    bool seen_self = false;
    for (const struct link_map *lm = _r_debug.r_map; lm; lm = lm->l_next) {
        if (lm->l_ld == _DYNAMIC) {
            seen_self = true;
            continue;
        }
        if (!seen_self)
            continue;
        void *p = lookup_in_object(lm->l_addr, lm->l_ld, name);
        if (p)
            return p;
    }
    return NULL;
}

/* The stubs jump through these pointers unconditionally: if libc's functions
 * could not be found, lookups fail (NULL) instead of jumping to address 0. */
static void *dlsym_unavailable(void *handle, const char *name)
{
    bs_log_limited(1, BS_LOG_ERROR, "cannot find the C library's dlsym: dynamic symbol "
                   "lookups return NULL; run without LD_PRELOAD=libblockswap.so");
    return NULL;
}

static void *dlvsym_unavailable(void *handle, const char *name, const char *version)
{
    return dlsym_unavailable(handle, name);
}

EARLY static void resolve_libc(void)
{
    if (BS_LIKELY(__atomic_load_n(&bs_libc_dlvsym, __ATOMIC_ACQUIRE)))
        return;
    void *s = next_definition("dlsym"), *v = next_definition("dlvsym");
    __atomic_store_n(&bs_libc_dlsym, s ? s : (void *)dlsym_unavailable, __ATOMIC_RELEASE);
    __atomic_store_n(&bs_libc_dlvsym, v ? v : (void *)dlvsym_unavailable, __ATOMIC_RELEASE);
}

void *bs_real_dlsym(void *handle, const char *name)
{
    resolve_libc();
    void *(*fn)(void *, const char *) = (void *(*)(void *, const char *))bs_libc_dlsym;
    return fn(handle, name);
}

void *bs_real_dlvsym(void *handle, const char *name, const char *version)
{
    resolve_libc();
    void *(*fn)(void *, const char *, const char *) =
        (void *(*)(void *, const char *, const char *))bs_libc_dlvsym;
    return fn(handle, name, version);
}

/* Only BLOCKSWAP_DISABLE is read here: dlsym may run under the loader lock, so
 * full initialisation waits for the first hooked call. */
static bool disabled_early(void)
{
    static int cached = -1;
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c < 0) {
        const char *v = getenv("BLOCKSWAP_DISABLE");
        c = v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 ||
                  strcmp(v, "yes") == 0 || strcmp(v, "on") == 0);
        __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    }
    return c;
}

/* Decides what dlsym/dlvsym return for a hooked driver name: our wrapper when the
 * lookup reaches the driver's function, else NULL meaning "do what libc does".
 * The stubs below call it and otherwise tail-jump into libc with the caller's
 * return address intact, so RTLD_NEXT keeps its meaning for everyone else. */
__attribute__((visibility("hidden"))) void *bs_dlsym_hook(void *handle, const char *name);
__attribute__((visibility("hidden"))) void *bs_dlvsym_hook(void *handle, const char *name,
                                                           const char *version);

static void *hook_lookup(void *handle, const char *name, void *found)
{
    int id = bs_hook_find(name);
    if (id < 0 || disabled_early())
        return NULL;
    void *wrapper = bs_hook_wrapper((enum bs_hook_id)id);
    if (!found)
        return NULL;
    if (found == wrapper)
        return wrapper;
    /* The handle's object defines it: that is the real function, unless another
     * library was adopted as real before, in which case we stay out of the way. */
    return bs_real_adopt((enum bs_hook_id)id, found) ? wrapper : NULL;
}

EARLY void *bs_dlsym_hook(void *handle, const char *name)
{
    resolve_libc();
    if (!name || name[0] != 'c' || name[1] != 'u')
        return NULL;
    return hook_lookup(handle, name, bs_real_dlsym(handle, name));
}

EARLY void *bs_dlvsym_hook(void *handle, const char *name, const char *version)
{
    resolve_libc();
    if (!name || name[0] != 'c' || name[1] != 'u')
        return NULL;
    return hook_lookup(handle, name, bs_real_dlvsym(handle, name, version));
}

#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl dlsym\n"
    ".type dlsym,@function\n"
    "dlsym:\n"
    "  .cfi_startproc\n"
    "  push %rdi\n"
    "  .cfi_adjust_cfa_offset 8\n"
    "  push %rsi\n"
    "  .cfi_adjust_cfa_offset 8\n"
    "  sub $8, %rsp\n"
    "  .cfi_adjust_cfa_offset 8\n"
    "  call bs_dlsym_hook\n"
    "  add $8, %rsp\n"
    "  .cfi_adjust_cfa_offset -8\n"
    "  pop %rsi\n"
    "  .cfi_adjust_cfa_offset -8\n"
    "  pop %rdi\n"
    "  .cfi_adjust_cfa_offset -8\n"
    "  test %rax, %rax\n"
    "  jz 1f\n"
    "  ret\n"
    "1:\n"
    "  jmp *bs_libc_dlsym(%rip)\n"
    "  .cfi_endproc\n"
    ".size dlsym, .-dlsym\n"
    "\n"
    ".globl dlvsym\n"
    ".type dlvsym,@function\n"
    "dlvsym:\n"
    "  .cfi_startproc\n"
    "  push %rdi\n"
    "  .cfi_adjust_cfa_offset 8\n"
    "  push %rsi\n"
    "  .cfi_adjust_cfa_offset 8\n"
    "  push %rdx\n"
    "  .cfi_adjust_cfa_offset 8\n"
    "  call bs_dlvsym_hook\n"
    "  pop %rdx\n"
    "  .cfi_adjust_cfa_offset -8\n"
    "  pop %rsi\n"
    "  .cfi_adjust_cfa_offset -8\n"
    "  pop %rdi\n"
    "  .cfi_adjust_cfa_offset -8\n"
    "  test %rax, %rax\n"
    "  jz 1f\n"
    "  ret\n"
    "1:\n"
    "  jmp *bs_libc_dlvsym(%rip)\n"
    "  .cfi_endproc\n"
    ".size dlvsym, .-dlvsym\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl dlsym\n"
    ".type dlsym,%function\n"
    "dlsym:\n"
    "  .cfi_startproc\n"
    "  stp x29, x30, [sp, #-32]!\n"
    "  .cfi_def_cfa_offset 32\n"
    "  .cfi_offset 29, -32\n"
    "  .cfi_offset 30, -24\n"
    "  mov x29, sp\n"
    "  stp x0, x1, [sp, #16]\n"
    "  bl bs_dlsym_hook\n"
    "  mov x9, x0\n"
    "  ldp x0, x1, [sp, #16]\n"
    "  ldp x29, x30, [sp], #32\n"
    "  .cfi_def_cfa_offset 0\n"
    "  cbz x9, 1f\n"
    "  mov x0, x9\n"
    "  ret\n"
    "1:\n"
    "  adrp x16, bs_libc_dlsym\n"
    "  ldr x16, [x16, #:lo12:bs_libc_dlsym]\n"
    "  br x16\n"
    "  .cfi_endproc\n"
    ".size dlsym, .-dlsym\n"
    "\n"
    ".globl dlvsym\n"
    ".type dlvsym,%function\n"
    "dlvsym:\n"
    "  .cfi_startproc\n"
    "  stp x29, x30, [sp, #-48]!\n"
    "  .cfi_def_cfa_offset 48\n"
    "  .cfi_offset 29, -48\n"
    "  .cfi_offset 30, -40\n"
    "  mov x29, sp\n"
    "  stp x0, x1, [sp, #16]\n"
    "  str x2, [sp, #32]\n"
    "  bl bs_dlvsym_hook\n"
    "  mov x9, x0\n"
    "  ldp x0, x1, [sp, #16]\n"
    "  ldr x2, [sp, #32]\n"
    "  ldp x29, x30, [sp], #48\n"
    "  .cfi_def_cfa_offset 0\n"
    "  cbz x9, 1f\n"
    "  mov x0, x9\n"
    "  ret\n"
    "1:\n"
    "  adrp x16, bs_libc_dlvsym\n"
    "  ldr x16, [x16, #:lo12:bs_libc_dlvsym]\n"
    "  br x16\n"
    "  .cfi_endproc\n"
    ".size dlvsym, .-dlvsym\n");
#else
#error "blockswap needs a dlsym tail-call stub for this architecture (x86_64 and aarch64 exist)"
#endif
