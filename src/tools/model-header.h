/* model-header.h: a model file's tensors, from its safetensors or GGUF header only
 * (blockswap-probe's --model). */
#ifndef BS_MODEL_HEADER_H
#define BS_MODEL_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct model_info {
    const char *format;     /* "safetensors" or "GGUF" */
    uint64_t file_bytes;
    uint64_t tensors;
    uint64_t total_bytes;   /* of all tensors, as stored */
    uint64_t blocks;        /* distinct `blocks.N.` prefixes */
    uint64_t block_max;     /* the largest block's bytes */
    uint64_t blocks_bytes;  /* all blocks together */
    uint64_t outside_bytes; /* tensors in no block */
    uint64_t width;         /* block 0's self-attention q: width x width; 0 if not found */
};

/* 0, or -1 with a reason in err (no file name). */
int bs_model_read(const char *path, struct model_info *mi, char *err, size_t errlen);

#endif
