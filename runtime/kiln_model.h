/*
 * kiln_model.h - how a generated model.c describes its model to the library code of runtime/kiln_lib.c,
 * which model.c includes at its end: the parameter table, the state (KV caches), and each function with its
 * signature, arena size and code. Internal to a model's library; the API is NAME.h (docs/c-api.md).
 */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include "kiln.h"
#include "kernels/kiln_kernel.h"

/* Everything one call of a generated function reads and writes. */
typedef struct {
    const real *params;          /* the parameter block, in the layout the function reads */
    real *grads;                 /* train_step: the gradient block (as many elements as params) */
    real *arena;                 /* scratch for activations: arena_size(dims) elements */
    const void *const *inputs;   /* the function's inputs, in its order */
    void *const *outputs;        /* its outputs, in its order */
    real *const *state;          /* the model's state tensors (KV caches), in the model's order */
    const int64_t *dims;         /* the values of the function's symbolic dims, in its order */
} kiln_call;

/* One entry point. */
typedef struct {
    kiln_function_desc desc;     /* its signature, as the API describes it */
    int num_dims;                /* its symbolic dims: each is a dim of an input, or the rows of the state */
    const char *const *dim_names;
    const int64_t *dim_bounds;   /* 0: unbounded */
    const char *const *dim_limits; /* per dim: what needs it within its bound, or NULL when sizes above the
                                    * bound run too (computed or no positions: the model extrapolates) */
    int packed;                  /* reads the parameters in the matrix-product engine's panel layout */
    size_t (*arena_size)(const int64_t *dims);
    void (*run)(const kiln_call *call);
} kiln_function_info;

/* One state tensor: a KV cache, [rows, shape...], the rows set by NAME_reset_state. */
typedef struct {
    const char *name;            /* "cache.0.k" */
    int rank;                    /* of one row */
    int64_t shape[KILN_MAX_RANK - 1];
    size_t row_elements;
} kiln_state_info;

/* Where a parameter is in a checkpoint that names it otherwise (a Hugging Face model.safetensors), from the
 * model file's weights section: that file's tensor, a slice of it along one axis, then transposed (the
 * loader reads it as kiln_rt.h's kiln_tensor_source). */
typedef struct {
    const char *tensor;          /* "h.0.attn.c_attn.weight" */
    int slice_axis;              /* of the file's tensor; -1: the whole tensor */
    int64_t slice_start;
    int transposed;
} kiln_param_source;

/* The whole model. */
typedef struct {
    const char *name;
    int num_params;
    const kiln_param_desc *params;
    size_t param_count;          /* elements of the parameter block */
    int num_state;
    const kiln_state_info *state;
    int num_functions;
    const kiln_function_info *functions;
    int (*pack)(real *params);   /* file layout -> panel layout, in place; 0, or -1 when out of memory */
    int (*unpack)(real *params); /* the inverse */
    const kiln_param_source *sources; /* parallel to params, or NULL: the model reads only its own names */
    int num_ignore;
    const char *const *ignore;   /* the other file's tensors the model does not read ('*' matches anything) */
} kiln_model_info;

#endif /* KILN_MODEL_H */
