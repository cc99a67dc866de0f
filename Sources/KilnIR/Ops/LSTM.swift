import KilnBasics

/// `lstm(%xg: [B, T, 4H], %w_hh: [4H, H], %b_hh: [4H]) -> [B, T, H]` — the recurrence of a long short-term
/// memory layer (Hochreiter & Schmidhuber 1997) in PyTorch's `nn.LSTM` layout: xg holds each position's input
/// projection x·W_ihᵀ + b_ih (a `linear`), and for t = 0 … T-1, from h₋₁ = c₋₁ = 0,
///
///     [i, f, g, o] = xg_t + h_{t-1}·W_hhᵀ + b_hh      (gate blocks of H, in this order)
///     c_t = σ(f)·c_{t-1} + σ(i)·tanh(g),   h_t = σ(o)·tanh(c_t)
///
/// and the result is h. In the language: `lstm(x, hidden: H, layers: L, dropout: p)`, with `nn.LSTM`'s
/// parameter names (`NAME.weight_ih_l0`, `NAME.weight_hh_l0`, `NAME.bias_ih_l0`, `NAME.bias_hh_l0`, …).
public struct LSTM: Op {
    public init() {}
    public let name = "lstm"
    public let summary = "xg `[B, T, 4H]` (x·W_ihᵀ + b_ih), W_hh `[4H, H]`, b_hh `[4H]` → h `[B, T, H]`: the LSTM recurrence (Hochreiter & Schmidhuber 1997) in nn.LSTM's gate order i, f, g, o, from zero state"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %xg = input : f32[B, T, 8]
          %w = param {init: normal, std: 0.3} : f32[8, 2]
          %b = param {init: zeros} : f32[8]
          %0 = lstm(%xg, %w, %b) : f32[B, T, 2]
          output h = %0
        }
        """
    public let arity = 3...3
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = []
    /// H, from the recurrent weight [4H, H] and the bias [4H], checked against xg [B, T, 4H].
    static func hidden(_ xg: TensorType, _ w: TensorType, _ b: TensorType, _ op: String) throws -> Dim {
        guard xg.shape.rank == 3 else { throw TypeError("\(op) expects the gates' inputs as [B, T, 4H], got \(xg)") }
        try requireFloat(xg, "\(op)'s input")
        guard w.shape.rank == 2, let h = w.shape.dims[1].constValue, h > 0, w.shape.dims[0] == .const(4 * h) else {
            throw TypeError("\(op)'s recurrent weight must be [4H, H], got \(w.shape)")
        }
        guard b.shape.dims == [.const(4 * h)] else { throw TypeError("\(op)'s recurrent bias must be [\(4 * h)], got \(b.shape)") }
        guard xg.shape.dims[2] == .const(4 * h) else {
            throw TypeError("\(op): the gates' inputs \(xg.shape) need a last dim of 4·\(h) = \(4 * h)")
        }
        return .const(h)
    }
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let h = try Self.hidden(ops[0], ops[1], ops[2], "lstm")
        return TensorType(ops[0].dtype, Array(ops[0].shape.dims.prefix(2)) + [h])
    }
    /// Backpropagation through time gives the gates' pre-activation gradients dxg (`lstm_grad`); the
    /// recurrent weight's is Σ_t dxg_tᵀ·h_{t-1} (`linear_grad_weight` of dxg and h shifted one position
    /// later), the bias's the sum of dxg.
    public func differentiate(_ d: inout Differentiation) throws {
        let o = d.operands
        guard d.wants(0) || d.wants(1) || d.wants(2) else { return }
        let dxg = d.emit(.lstmGrad, [d.gradient] + o)
        if d.wants(0) { d.give(0, dxg) }
        if d.wants(1) { d.give(1, d.emit(.linearGradWeight, [dxg, d.emit(.shift, [d.index], [(Shift.steps.name, .int(1))])])) }
        if d.wants(2) { d.give(2, d.sumTo(dxg, like: o[2])) }
    }
    /// Per position and row: h_{t-1}·W_hhᵀ (2·4H·H), the two additions to each gate's input (8H) and the
    /// cell and hidden updates (4H).
    public func flops(_ c: FlopContext) -> Int { Self.stepFlops(c, rows: c.count(c.operands[0]) / c.dim(c.operands[0].shape.dims[2])) }
    static func stepFlops(_ c: FlopContext, rows: Int) -> Int {
        let h = c.dim(c.node.type.shape.dims[2])
        return rows * (8 * h * h + 12 * h)
    }
}

/// `lstm_grad(%dy: [B, T, H], %xg, %w_hh, %b_hh) -> [B, T, 4H]` — backpropagation through time of `lstm`:
/// the gradient of its gates' pre-activations, which is also xg's. It runs the recurrence again to recover
/// the gates and cells (no activations are kept from the forward pass), then walks back from T-1 to 0.
public struct LSTMGrad: Op {
    public init() {}
    public let name = "lstm_grad"
    public let summary = "dy `[B, T, H]`, xg, W_hh, b_hh → xg's type: dL/dxg of lstm (backpropagation through time; the forward recurrence is run again)"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %dy = input : f32[B, T, 2]
          %xg = input : f32[B, T, 8]
          %w = param {init: normal, std: 0.3} : f32[8, 2]
          %b = param {init: zeros} : f32[8]
          %0 = lstm_grad(%dy, %xg, %w, %b) : f32[B, T, 8]
          output d = %0
        }
        """
    public let arity = 4...4
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let h = try LSTM.hidden(ops[1], ops[2], ops[3], "lstm_grad")
        guard ops[0] == TensorType(ops[1].dtype, Array(ops[1].shape.dims.prefix(2)) + [h]) else {
            throw TypeError("lstm_grad: dy \(ops[0]) does not match the lstm output for \(ops[1])")
        }
        return ops[1]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// The recurrence again, then per position dxg·W_hh (2·4H·H) and the gates' derivatives (about 20H).
    public func flops(_ c: FlopContext) -> Int {
        let h = c.dim(c.operands[0].shape.dims[2]), rows = c.count(c.operands[0]) / h
        return rows * (8 * h * h + 12 * h) + rows * (8 * h * h + 20 * h)
    }
}

/// `cached_lstm(%xg: [B, T, 4H], %h: [R, H], %c: [R, H], %w_hh, %b_hh, %positions: i32[B, T]?) -> [B, T, H]`
/// — `lstm` that carries its state between calls: row b starts from rows b of the states h and c when its
/// first position (positions[b, 0]) is past 0, from zeros otherwise (and always without positions), and
/// leaves its last hidden state and cell there. Made by `make-prefill` (no positions: the prompt) and
/// `make-decode` (one position), so a generated token costs one step whatever the prefix.
public struct CachedLSTM: Op {
    public init() {}
    public let name = "cached_lstm"
    public let summary = "xg `[B, T, 4H]`, h, c `[R, H]` (states), W_hh, b_hh, positions `i32[B, T]`? → `[B, T, H]`: lstm from the state of row b (zeros at position 0 or without positions), which it updates in place"
    public let example = """
        graph G {
          dim R
          dim B
          %xg = input : f32[B, 1, 8]
          %state.0.h = state : f32[R, 2]
          %state.0.c = state : f32[R, 2]
          %w = param {init: normal, std: 0.3} : f32[8, 2]
          %b = param {init: zeros} : f32[8]
          %positions = input {role: positions, limit: 8} : i32[B, 1]
          %0 = cached_lstm(%xg, %state.0.h, %state.0.c, %w, %b, %positions) : f32[B, 1, 2]
          output h = %0
        }
        """
    public let arity = 5...6
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.impure, .effect, .afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let h = try LSTM.hidden(ops[0], ops[3], ops[4], "cached_lstm")
        for s in ops[1...2] where s.shape.rank != 2 || s.shape.dims[1] != h || s.dtype != ops[0].dtype {
            throw TypeError("cached_lstm: the states must be [R, \(h)], got \(s)")
        }
        if ops.count == 6 {
            try requireInteger(ops[5], "cached_lstm positions")
            guard ops[5].shape.dims == Array(ops[0].shape.dims.prefix(2)) else {
                throw TypeError("cached_lstm: positions \(ops[5].shape) do not match \(ops[0].shape)")
            }
        }
        return TensorType(ops[0].dtype, Array(ops[0].shape.dims.prefix(2)) + [h])
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { LSTM.stepFlops(c, rows: c.count(c.operands[0]) / c.dim(c.operands[0].shape.dims[2])) }
}

extension OpKind {
    public static let lstm = OpKind("lstm")
    public static let lstmGrad = OpKind("lstm_grad")
    public static let cachedLSTM = OpKind("cached_lstm")
}
