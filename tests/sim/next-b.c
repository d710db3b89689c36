/* Helper library for rtld-next: the definition that comes after next-a. */
const char *bs_probe(void);

const char *bs_probe(void)
{
    return "b";
}

/* Referenced by rtld-next so that the linker keeps this library in the link map. */
int bs_next_b_present(void);
int bs_next_b_present(void)
{
    return 1;
}
