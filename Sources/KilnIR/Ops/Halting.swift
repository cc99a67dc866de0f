import KilnBasics

/// Adaptive computation time (Graves 2016) as the Universal Transformer applies it (Dehghani et al. 2019,
/// their dynamic-halting listing): each position runs N steps of a shared block; step k gives a halting
/// probability p_k ([B, T, 1], a sigmoid of the state before the step) and a new state s_k. Per position,
/// with h = 0, R = 0, n = 0 and the threshold θ = 1 − ε, step k computes
///
///     running = h < 1;  halted = running and h + p_k > θ;  running = running and h + p_k ≤ θ
///     h += p_k·running;  R += halted·(1 − h);  h += halted·R;  n += running + halted
///     w_k = p_k·running + halted·R
///
/// (a position stops at the step where its summed probability would pass θ, and that step gets the
/// remainder R; later steps weigh 0). `act` is the weighted state y_N of y_k = w_k·s_k + (1 − w_k)·y_(k−1),
/// y_0 = 0; `act_ponder` the mean over positions of the ponder cost n + R. The comparisons are steps:
/// gradients reach p through the weights and the remainder, and s through the weights.
public enum Halting {
    public static let steps = AttrKey<Int>("steps")
    public static let threshold = AttrKey<Double>("threshold")
    static func check(_ ops: ArraySlice<TensorType>, _ attrs: Attributes, _ op: String) throws -> [Dim] {
        guard attrs[threshold] > 0, attrs[threshold] <= 1 else { throw TypeError("\(op): threshold must be in (0, 1], got \(attrs[threshold])") }
        guard let p = ops.first, p.shape.rank >= 1, p.shape.last == .const(1) else {
            throw TypeError("\(op): halting probabilities must be [..., 1]")
        }
        for t in ops {
            try requireFloat(t, "\(op)'s halting probabilities")
            guard t == p else { throw TypeError("\(op): halting probabilities \(t) and \(p) differ") }
        }
        return Array(p.shape.dims.dropLast())
    }
    /// The steps' probabilities and states of an `act` or `act_grad` node's operands from `first`.
    static func split(_ ops: [TensorType], from first: Int, _ attrs: Attributes, _ op: String) throws -> (positions: [Dim], state: TensorType) {
        let n = attrs[steps]
        guard n >= 1, ops.count == first + 2 * n else { throw TypeError("\(op) takes \(2 * n) operands (\(n) halting probabilities, then \(n) states), got \(ops.count - first)") }
        let positions = try check(ops[first..<(first + n)], attrs, op)
        let s = ops[first + n]
        guard Array(s.shape.dims.dropLast()) == positions, s.dtype == ops[first].dtype else {
            throw TypeError("\(op): states \(s) do not match halting probabilities \(ops[first])")
        }
        for t in ops[(first + n)...] where t != s { throw TypeError("\(op): states \(t) and \(s) differ") }
        return (positions, s)
    }
}

/// `act(%p_1, …, %p_N, %s_1, …, %s_N) {steps: N, threshold}` — the halting-weighted state (see `Halting`).
public struct AdaptiveComputation: Op {
    public init() {}
    public let name = "act"
    public let summary = "p_1 … p_N `[..., 1]`, s_1 … s_N `[..., C]` → `[..., C]`: the Universal Transformer's halting-weighted state (adaptive computation time, Graves 2016; Dehghani et al. 2019)"
    public let example = """
        graph G {
          dim B
          %p0 = input : f32[B, 1]
          %p1 = input : f32[B, 1]
          %s0 = input : f32[B, 4]
          %s1 = input : f32[B, 4]
          %0 = act(%p0, %p1, %s0, %s1) {steps: 2, threshold: 0.99} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 2...2_000
    public var attributes: [AttrSpec] { [Halting.steps.spec, Halting.threshold.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try Halting.split(ops, from: 0, attrs, "act").state
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let n = d.node.attrs[Halting.steps]
        let attrs = [(Halting.steps.name, AttrValue.int(n)), (Halting.threshold.name, d.node.attrs[Halting.threshold.name]!)]
        for (wrt, range) in [("p", 0..<n), ("s", n..<(2 * n))] where range.contains(where: { d.wants($0) }) {
            let all = d.emit(.actGrad, [d.gradient] + d.operands, attrs + [(ActGrad.wrt.name, .word(wrt))])
            for k in range where d.wants(k) { d.give(k, d.emit(.select, [all], [(Select.index.name, .int(k - range.lowerBound))])) }
        }
    }
    /// Per position the halting bookkeeping (about 10 per step), and per step and element the update
    /// y += w·(s − y): 3.
    public func flops(_ c: FlopContext) -> Int {
        let n = c.node.attrs[Halting.steps]
        return n * (10 * c.count(0) + 3 * c.out)
    }
}

/// `act_ponder(%p_1, …, %p_N) {threshold} : []` — the mean over positions of the ponder cost n + R (see `Halting`),
/// the term the Universal Transformer adds to its loss with a weight.
public struct ActPonder: Op {
    public init() {}
    public let name = "act_ponder"
    public let summary = "p_1 … p_N `[..., 1]` → `[]`: the mean ponder cost n + R of adaptive computation time (steps taken plus the remainder)"
    public let example = """
        graph G {
          dim B
          %p0 = input : f32[B, 1]
          %p1 = input : f32[B, 1]
          %0 = act_ponder(%p0, %p1) {threshold: 0.99} : f32[]
          output y = %0
        }
        """
    public let arity = 1...1_000
    public var attributes: [AttrSpec] { [Halting.threshold.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        _ = try Halting.check(ops[...], attrs, "act_ponder")
        return TensorType(ops[0].dtype, [])
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let n = d.operands.count
        let all = d.emit(.actPonderGrad, [d.gradient] + d.operands, [(Halting.threshold.name, d.node.attrs[Halting.threshold.name]!)])
        for k in 0..<n where d.wants(k) { d.give(k, d.emit(.select, [all], [(Select.index.name, .int(k))])) }
    }
    /// Per position and step the bookkeeping (about 10), and the mean.
    public func flops(_ c: FlopContext) -> Int { 10 * c.operands.count * c.count(0) + c.count(0) }
}

/// `act_grad(%dy, %p_1, …, %p_N, %s_1, …, %s_N) {steps, threshold, wrt: p | s}` — the gradient of `act` with
/// respect to every p_k (`[N, ..., 1]`) or every s_k (`[N, ..., C]`), stacked.
public struct ActGrad: Op {
    public init() {}
    public static let wrt = AttrKey<Word>("wrt", words: ["p", "s"])
    public let name = "act_grad"
    public let summary = "dy, p_1 … p_N, s_1 … s_N → `[N, ..., 1]` (wrt p) or `[N, ..., C]` (wrt s): the gradients of `act`, stacked"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 4]
          %p0 = input : f32[B, 1]
          %p1 = input : f32[B, 1]
          %s0 = input : f32[B, 4]
          %s1 = input : f32[B, 4]
          %0 = act_grad(%dy, %p0, %p1, %s0, %s1) {steps: 2, threshold: 0.99, wrt: p} : f32[2, B, 1]
          output d = %0
        }
        """
    public let arity = 3...2_001
    public var attributes: [AttrSpec] { [Halting.steps.spec, Halting.threshold.spec, Self.wrt.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (_, s) = try Halting.split(ops, from: 1, attrs, "act_grad")
        guard ops[0] == s else { throw TypeError("act_grad: dy \(ops[0]) does not match the states \(s)") }
        let one = attrs[Self.wrt] == "p" ? ops[1] : s
        return TensorType(one.dtype, [.const(attrs[Halting.steps])] + one.shape.dims)
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// Both recompute the weights (10 per position and step); wrt p adds dy·s_k per step and element (2) and
    /// the reverse recurrences (about 10 per position and step); wrt s scales dy per step and element (1).
    public func flops(_ c: FlopContext) -> Int {
        let n = c.node.attrs[Halting.steps], positions = c.count(1), elements = c.count(0)
        return c.node.attrs[Self.wrt] == "p" ? n * (20 * positions + 2 * elements) : n * (10 * positions + elements)
    }
}

/// `act_ponder_grad(%dy: [], %p_1, …, %p_N) {threshold} : [N, ..., 1]` — the gradient of `act_ponder` with
/// respect to every p_k, stacked: the remainder's −1 for each step before the halting one, over the positions.
public struct ActPonderGrad: Op {
    public init() {}
    public let name = "act_ponder_grad"
    public let summary = "dy `[]`, p_1 … p_N → `[N, ..., 1]`: the gradient of `act_ponder`, stacked"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[]
          %p0 = input : f32[B, 1]
          %p1 = input : f32[B, 1]
          %0 = act_ponder_grad(%dy, %p0, %p1) {threshold: 0.99} : f32[2, B, 1]
          output d = %0
        }
        """
    public let arity = 2...1_001
    public var attributes: [AttrSpec] { [Halting.threshold.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0].shape.rank == 0 else { throw TypeError("act_ponder_grad: dy must be a scalar, got \(ops[0])") }
        _ = try Halting.check(ops[1...], attrs, "act_ponder_grad")
        return TensorType(ops[1].dtype, [.const(ops.count - 1)] + ops[1].shape.dims)
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// Per position and step the bookkeeping and its reverse (about 20).
    public func flops(_ c: FlopContext) -> Int { 20 * (c.operands.count - 1) * c.count(1) }
}

extension OpKind {
    public static let act = OpKind("act")
    public static let actPonder = OpKind("act_ponder")
    public static let actGrad = OpKind("act_grad")
    public static let actPonderGrad = OpKind("act_ponder_grad")
}
