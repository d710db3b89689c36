/* gpu: exits 0 when an NVIDIA driver with at least one device is present, 77 (skip)
 * otherwise, saying which. Loads the system libcuda.so.1 with dlopen. */
#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>

int main(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) {
        printf("no NVIDIA driver: %s\n", dlerror());
        return 77;
    }
    CUresult (*init)(unsigned) = (CUresult (*)(unsigned))dlsym(h, "cuInit");
    CUresult (*count)(int *) = (CUresult (*)(int *))dlsym(h, "cuDeviceGetCount");
    int n = 0;
    if (!init || !count || init(0) != CUDA_SUCCESS || count(&n) != CUDA_SUCCESS || n < 1) {
        printf("the NVIDIA driver found no usable GPU\n");
        return 77;
    }
    Dl_info info;
    printf("%d GPU(s), driver %s\n", n, dladdr((void *)init, &info) ? info.dli_fname : "?");
    return 0;
}
