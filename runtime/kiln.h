/*
 * kiln.h - the types of the C API of every model Kiln compiles.
 *
 * `kiln build MODEL.kiln -o DIR` writes DIR/libNAME.a, DIR/libNAME.so and DIR/NAME.h, where NAME is the
 * model's prefix (its name in snake case: CharGPT -> char_gpt). NAME.h declares the model's functions,
 * NAME_open, NAME_run, ... (docs/c-api.md); this header holds what they share, so that the headers of two
 * models can be included in one program.
 *
 * Conventions: every function that can fail returns a kiln_status (KILN_OK is 0) and, where it has a
 * context, leaves a one-line message for NAME_error(ctx). Nothing in a library prints or exits.
 */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>

/* What went wrong (0 is success). */
typedef enum {
    KILN_OK = 0,
    KILN_ERR_ARGUMENT = 1,  /* a NULL pointer, an unknown function, a bad thread count, ... */
    KILN_ERR_INPUT = 2,     /* an input or output tensor that does not fit the function: its message names it */
    KILN_ERR_WEIGHTS = 3,   /* a weights file or buffer that is not valid safetensors or does not fit the model */
    KILN_ERR_IO = 4,        /* a file that cannot be read or written */
    KILN_ERR_MEMORY = 5,    /* out of memory */
    KILN_ERR_STATE = 6      /* a function that needs state (a KV cache) the context does not have */
} kiln_status;

/* Element types of tensors. */
typedef enum { KILN_F32 = 0, KILN_F64 = 1, KILN_I32 = 2, KILN_I64 = 3 } kiln_dtype;

/* What an input's values are, and so which values a call accepts. */
typedef enum {
    KILN_ROLE_DATA = 0,      /* any finite numbers */
    KILN_ROLE_TOKENS = 1,    /* token ids in [0, limit) */
    KILN_ROLE_MASK = 2,      /* 1 for a token, 0 for padding */
    KILN_ROLE_TARGETS = 3,   /* class ids in [0, limit), or the ignore id */
    KILN_ROLE_POSITIONS = 4, /* positions in [0, limit) of the tokens a decode step writes */
    KILN_ROLE_SEED = 5       /* the seed of a training step's dropout masks */
} kiln_role;

#define KILN_MAX_RANK 8

/* A tensor passed to or returned from a function: row-major data of the given dtype and shape. */
typedef struct {
    const char *name;               /* the function's input or output name */
    kiln_dtype dtype;
    int rank;
    int64_t shape[KILN_MAX_RANK];
    void *data;
} kiln_tensor;

/* One input or output of a function, as the model declares it. */
typedef struct {
    const char *name;
    kiln_dtype dtype;
    int rank;
    int64_t shape[KILN_MAX_RANK];     /* the size of each dim; -1 where the dim is symbolic */
    const char *dims[KILN_MAX_RANK];  /* the name of each symbolic dim ("B", "T"); NULL for a constant */
    int64_t bounds[KILN_MAX_RANK];    /* the largest size a symbolic dim may take; 0 when unbounded */
    kiln_role role;
    int64_t limit;                    /* tokens, targets, positions: values lie in [0, limit); 0: no limit */
    int has_ignore;                   /* targets: also this value, which the loss skips */
    int64_t ignore;
} kiln_tensor_desc;

/* One entry point of a model: forward, train_step, loss, prefill, decode_step. */
typedef struct {
    const char *name;
    int num_inputs;
    const kiln_tensor_desc *inputs;
    int num_outputs;
    const kiln_tensor_desc *outputs;
    int uses_state;      /* reads or writes the context's state (the KV cache: prefill, decode_step) */
    int writes_grads;    /* train_step: writes the gradient of every parameter into NAME_grads(ctx) */
} kiln_function_desc;

/* How a parameter is initialised and treated by optimisers (weight decay skips biases and norm gains). */
typedef enum { KILN_INIT_ZEROS = 0, KILN_INIT_ONES = 1, KILN_INIT_NORMAL = 2 } kiln_init_kind;
typedef enum { KILN_PARAM_WEIGHT = 0, KILN_PARAM_BIAS = 1, KILN_PARAM_NORM = 2, KILN_PARAM_EMBEDDING = 3 } kiln_param_role;

/* One parameter tensor: its name in weights files, shape, and place in the parameter block. */
typedef struct {
    const char *name;       /* e.g. "layers.0.attention.query.weight" */
    int rank;               /* 1..4 */
    int64_t shape[4];
    size_t offset;          /* in elements, into the parameter block (NAME_params) */
    size_t numel;
    kiln_init_kind init;
    float init_std;         /* KILN_INIT_NORMAL: N(0, init_std^2) */
    kiln_param_role role;
} kiln_param_desc;

#endif /* KILN_H */
