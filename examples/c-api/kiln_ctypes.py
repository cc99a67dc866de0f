"""kiln_ctypes.py - any model Kiln compiles, called from Python through ctypes and its libNAME.so.

    from kiln_ctypes import Model
    with Model("out/enc/libtiny_encoder.so", "w.safetensors") as m:
        print(m.functions["forward"])                 # forward(tokens: i32[B, T<=19], mask: ...) -> (...)
        out = m.run("forward", tokens=ids, mask=mask) # numpy arrays in, a dict of numpy arrays out

The library describes its own functions (names, dtypes, symbolic dims and their bounds), so this file knows
nothing about any one model: output shapes come from the dims the inputs bind. Errors raise KilnError
with the library's one-line message. Needs numpy. `python3 kiln_ctypes.py LIB.so` prints the signatures.
"""
import ctypes
import os
import sys

import numpy as np

MAX_RANK = 8
DTYPES = {0: np.float32, 1: np.float64, 2: np.int32, 3: np.int64}
DTYPE_NAMES = {0: "f32", 1: "f64", 2: "i32", 3: "i64"}
ROLES = {0: "data", 1: "tokens", 2: "mask", 3: "targets", 4: "positions", 5: "seed"}


class Tensor(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int),
                ("shape", ctypes.c_int64 * MAX_RANK), ("data", ctypes.c_void_p)]


class TensorDesc(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int),
                ("shape", ctypes.c_int64 * MAX_RANK), ("dims", ctypes.c_char_p * MAX_RANK),
                ("bounds", ctypes.c_int64 * MAX_RANK), ("role", ctypes.c_int), ("limit", ctypes.c_int64),
                ("has_ignore", ctypes.c_int), ("ignore", ctypes.c_int64)]


class FunctionDesc(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("num_inputs", ctypes.c_int), ("inputs", ctypes.POINTER(TensorDesc)),
                ("num_outputs", ctypes.c_int), ("outputs", ctypes.POINTER(TensorDesc)),
                ("uses_state", ctypes.c_int), ("writes_grads", ctypes.c_int)]


class ParamDesc(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("rank", ctypes.c_int), ("shape", ctypes.c_int64 * 4),
                ("offset", ctypes.c_size_t), ("numel", ctypes.c_size_t), ("init", ctypes.c_int),
                ("init_std", ctypes.c_float), ("role", ctypes.c_int)]


class KilnError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Port:
    """One input or output as the model declares it: dims are ints, or (name, bound) for a symbolic dim."""

    def __init__(self, d):
        self.name = d.name.decode()
        self.dtype = d.dtype
        self.dims = [int(d.shape[i]) if d.shape[i] >= 0 else (d.dims[i].decode(), int(d.bounds[i]))
                     for i in range(d.rank)]
        self.role, self.limit = ROLES[d.role], int(d.limit)

    def __repr__(self):
        dims = [str(x) if isinstance(x, int) else x[0] + (f"<={x[1]}" if x[1] else "") for x in self.dims]
        return f"{self.name}: {DTYPE_NAMES[self.dtype]}[{', '.join(dims)}]"


class Function:
    def __init__(self, d):
        self.name = d.name.decode()
        self.inputs = [Port(d.inputs[i]) for i in range(d.num_inputs)]
        self.outputs = [Port(d.outputs[i]) for i in range(d.num_outputs)]
        self.uses_state = bool(d.uses_state)

    def __repr__(self):
        return f"{self.name}({', '.join(map(repr, self.inputs))}) -> ({', '.join(map(repr, self.outputs))})"


class Model:
    """A context of a compiled model: its library (libPREFIX.so) and weights (a path, bytes, or None for zeros)."""

    def __init__(self, library, weights=None, threads=0):
        self.prefix = os.path.basename(library)[len("lib"):].split(".so")[0]
        self.lib = lib = ctypes.CDLL(os.path.abspath(library))
        for name, res, args in [
            ("create", ctypes.c_int, [ctypes.POINTER(ctypes.c_void_p)]),
            ("open", ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]),
            ("load_memory", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]),
            ("free", None, [ctypes.c_void_p]),
            ("error", ctypes.c_char_p, [ctypes.c_void_p]),
            ("set_threads", ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
            ("num_functions", ctypes.c_int, []),
            ("function", ctypes.POINTER(FunctionDesc), [ctypes.c_int]),
            ("model_name", ctypes.c_char_p, []),
            ("run", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(Tensor), ctypes.c_int,
                                   ctypes.POINTER(Tensor), ctypes.c_int]),
            ("reset_state", ctypes.c_int, [ctypes.c_void_p, ctypes.c_int64]),
            ("state_rows", ctypes.c_int64, [ctypes.c_void_p]),
            ("copy_state_row", ctypes.c_int, [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]),
            ("num_params", ctypes.c_int, []),
            ("param", ctypes.POINTER(ParamDesc), [ctypes.c_int]),
            ("params", ctypes.POINTER(ctypes.c_float), [ctypes.c_void_p]),
        ]:
            f = getattr(lib, f"{self.prefix}_{name}")
            f.restype, f.argtypes = res, args
            setattr(self, "_" + name, f)
        self.name = self._model_name().decode()
        self.functions = {}
        for i in range(self._num_functions()):
            f = Function(self._function(i).contents)
            self.functions[f.name] = f
        self.ctx = ctypes.c_void_p()
        if isinstance(weights, (bytes, bytearray)):
            self._check(self._create(ctypes.byref(self.ctx)))
            self._check(self._load_memory(self.ctx, bytes(weights), len(weights)))
        elif weights is not None:
            status = self._open(os.fsencode(weights), ctypes.byref(self.ctx))
            self._check(status)
        else:
            self._check(self._create(ctypes.byref(self.ctx)))
        self._check(self._set_threads(self.ctx, threads))

    def _check(self, status):
        if status != 0:
            message = self._error(self.ctx).decode() if self.ctx else "out of memory"
            raise KilnError(status, message)

    def run(self, function, **inputs):
        """Runs an entry point on numpy arrays (converted to the declared dtypes); returns its outputs."""
        if function not in self.functions:
            raise KilnError(1, f"model {self.name} has no function '{function}'")
        f = self.functions[function]
        arrays, bound = {}, {}
        for port in f.inputs:
            if port.name in inputs:
                a = np.ascontiguousarray(inputs[port.name], dtype=DTYPES[port.dtype])
                arrays[port.name] = a
                for d, n in zip(port.dims, a.shape):
                    if not isinstance(d, int):
                        bound.setdefault(d[0], n)
        extra = set(inputs) - set(arrays)
        if extra:
            raise KilnError(2, f"{function} has no input '{sorted(extra)[0]}'")
        outputs = {}
        for port in f.outputs:
            shape = [d if isinstance(d, int) else bound.get(d[0], d[1]) for d in port.dims]
            outputs[port.name] = np.zeros(shape, dtype=DTYPES[port.dtype])

        def tensors(ports, values):
            ts = (Tensor * max(1, len(values)))()
            for t, (name, a) in zip(ts, values.items()):
                port = next(p for p in ports if p.name == name)
                t.name, t.dtype, t.rank = name.encode(), port.dtype, a.ndim
                for i, n in enumerate(a.shape):
                    t.shape[i] = n
                t.data = a.ctypes.data
            return ts

        ins, outs = tensors(f.inputs, arrays), tensors(f.outputs, outputs)
        self._check(self._run(self.ctx, function.encode(), ins, len(arrays), outs, len(outputs)))
        return outputs

    def params(self):
        """A copy of every parameter by its weights-file name (an f32 build's parameter block)."""
        block = self._params(self.ctx)
        if not block:
            self._check(1)
        out = {}
        for i in range(self._num_params()):
            d = self._param(i).contents
            flat = np.ctypeslib.as_array(block, shape=(d.offset + d.numel,))[d.offset:]
            out[d.name.decode()] = flat.reshape([d.shape[k] for k in range(d.rank)]).copy()
        return out

    def reset_state(self, rows):
        self._check(self._reset_state(self.ctx, rows))

    def state_rows(self):
        return self._state_rows(self.ctx)

    def copy_state_row(self, source, dest):
        self._check(self._copy_state_row(self.ctx, source, dest))

    def close(self):
        if self.ctx:
            self._free(self.ctx)
            self.ctx = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 kiln_ctypes.py LIB.so")
    m = Model(sys.argv[1])
    print(f"model {m.name}")
    for f in m.functions.values():
        print(" ", f, *(["(uses the KV cache)"] if f.uses_state else []))
