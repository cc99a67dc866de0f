import KilnBasics

/// `linear(%x: [..., K], %w: [N, K], %b: [N]?) -> [..., N]` — x·wᵀ + b. After epilogue fusion,
/// `{activation: gelu}` applies an activation to x·wᵀ + b and `{residual: true}` takes one more operand
/// `%r: [..., N]` added last: act(x·wᵀ + b) + r, or with `{combine: mul}` multiplied: act(x·wᵀ + b) · r.
public struct Linear: Op {
    public init() {}
    /// An activation of the table applied in the product's epilogue (pass `fuse-epilogue`).
    public static let activation = AttrKey<Word>("activation", default: "none", words: ["none"] + Activation.all.map(\.name))
    /// Whether the last operand is a residual added after the activation (pass `fuse-epilogue`).
    public static let residual = AttrKey<Bool>("residual", default: false)
    /// How the residual combines with act(x·wᵀ + b): `add`, or `mul` (a gated linear unit's up projection
    /// times its activated gate, pass `fuse-epilogue`).
    public static let combine = AttrKey<Word>("combine", default: "add", words: ["add", "mul"])
    public let name = "linear"
    public let summary = "x `[..., K]`, w `[N, K]`, b `[N]`? (and r `[..., N]` after `fuse-epilogue`) → `[..., N]`: act(x·wᵀ + b) + r"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %w = param {init: normal, std: 0.02} : f32[3, 4]
          %b = param {init: zeros} : f32[3]
          %0 = linear(%x, %w, %b) : f32[B, 3]
          output y = %0
        }
        """
    public let arity = 2...4
    public var attributes: [AttrSpec] { [Self.activation.spec, Self.residual.spec, Self.combine.spec] }
    public let traits: OpTraits = [.rowwise]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (x, w) = (ops[0], ops[1])
        try requireFloat(x, "linear input")
        guard w.shape.rank == 2 else { throw TypeError("linear weight must be rank 2 [out, in], got \(w.shape)") }
        guard let k = x.shape.last, k == w.shape.dims[1] else {
            throw TypeError("linear: input has last dim \(x.shape.last.map(\.description) ?? "none") but weight expects \(w.shape.dims[1]) (weight shape \(w.shape))")
        }
        let out = TensorType(x.dtype, x.shape.dims.dropLast() + [w.shape.dims[0]])
        let residual = attrs[Self.residual]
        let biasCount = ops.count - 2 - (residual ? 1 : 0)
        guard biasCount == 0 || biasCount == 1 else { throw TypeError("linear takes x, w, an optional bias\(residual ? " and the residual" : ""); got \(ops.count) operands") }
        if biasCount == 1 {
            guard ops[2].shape.dims == [w.shape.dims[0]] else { throw TypeError("linear bias must have shape [\(w.shape.dims[0])], got \(ops[2].shape)") }
        }
        if residual, ops.last! != out { throw TypeError("linear residual must have the output's type \(out), got \(ops.last!)") }
        if attrs[Self.combine] == "mul", !residual { throw TypeError("linear: combine: mul needs residual: true (the operand it multiplies by)") }
        return out
    }
    /// y = x·wᵀ + b: dx = dy·w, dw = dyᵀ·x, db = Σ dy.
    public func differentiate(_ d: inout Differentiation) throws {
        let n = d.node, o = d.operands, g = d.gradient
        guard n.attrs.value(Self.activation) == nil, !n.attrs[Self.residual], n.attrs.value(Self.combine) == nil else {
            throw DifferentiationError("an epilogue-fused linear cannot be differentiated: fusion runs after autodiff")
        }
        if d.wants(0) { d.give(0, d.emit(.linearGradInput, [g, o[1]])) }
        if d.wants(1) { d.give(1, d.emit(.linearGradWeight, [g, o[0]])) }
        if d.wants(2) { d.give(2, d.sumTo(g, like: o[2])) }
    }
    /// The product, then the epilogue: bias, activation (as its own kernel counts), residual (added or multiplied).
    public func flops(_ c: FlopContext) -> Int {
        let k = c.dim(c.operands[0].shape.last!)
        let residual = c.node.attrs[Self.residual]
        let bias = c.operands.count - (residual ? 3 : 2) == 1
        let act = Activation.named(c.node.attrs[Self.activation].text)?.flops ?? 0
        return 2 * c.out * k + (bias ? c.out : 0) + act * c.out + (residual ? c.out : 0)
    }
}

/// `linear_stack(%x: [..., K], %w0 … %w{n-1}: [N, K], %b0 … %b{n-1}: [N]?) {count: n} -> [n, ..., N]` —
/// n linear layers of one input as one matrix product (the merged Q, K, V projections; pass
/// `merge-linears`): slice i (`select {index: i}`) is x·w_iᵀ + b_i. Biases: all or none.
public struct LinearStack: Op {
    public init() {}
    public static let count = AttrKey<Int>("count")
    public let name = "linear_stack"
    public let summary = "x `[..., K]`, w₀ … wₙ₋₁ `[N, K]`, b₀ … bₙ₋₁ `[N]`? → `[n, ..., N]`, slice i is x·wᵢᵀ + bᵢ (set by `merge-linears`)"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %w0 = param {init: normal, std: 0.02} : f32[3, 4]
          %w1 = param {init: normal, std: 0.02} : f32[3, 4]
          %0 = linear_stack(%x, %w0, %w1) {count: 2} : f32[2, B, 3]
          output y = %0
        }
        """
    public let arity = 3...33
    public var attributes: [AttrSpec] { [Self.count.spec] }
    public let traits: OpTraits = [.afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let x = ops[0], n = attrs[Self.count]
        try requireFloat(x, "linear_stack input")
        guard n >= 2, n <= 16 else { throw TypeError("linear_stack count must be 2 to 16") }
        guard ops.count == 1 + n || ops.count == 1 + 2 * n else {
            throw TypeError("linear_stack {count: \(n)} takes x, \(n) weights and optionally \(n) biases; got \(ops.count) operands")
        }
        let w = ops[1]
        guard w.shape.rank == 2, x.shape.last == w.shape.dims[1] else {
            throw TypeError("linear_stack: input \(x.shape) does not match weight \(w.shape)")
        }
        for (i, t) in ops[1...n].enumerated() where t != w { throw TypeError("linear_stack: weight \(i) is \(t), weight 0 is \(w)") }
        for (i, t) in ops.dropFirst(1 + n).enumerated() where t.shape.dims != [w.shape.dims[0]] {
            throw TypeError("linear_stack: bias \(i) must have shape [\(w.shape.dims[0])], got \(t.shape)")
        }
        return TensorType(x.dtype, [.const(n)] + x.shape.dims.dropLast() + [w.shape.dims[0]])
    }
    public func differentiate(_ d: inout Differentiation) throws {
        throw DifferentiationError("linear_stack cannot be differentiated: merge-linears runs on inference graphs only")
    }
    public func flops(_ c: FlopContext) -> Int {
        let k = c.dim(c.operands[0].shape.last!)
        return 2 * c.out * k + (c.operands.count > 1 + c.node.attrs[Self.count] ? c.out : 0)
    }
}

/// `linear_grad_input(%dy: [..., N], %w: [N, K]) -> [..., K]` — dy·w, the input gradient of `linear`.
public struct LinearGradInput: Op {
    public init() {}
    public let name = "linear_grad_input"
    public let summary = "dy `[..., N]`, w `[N, K]` (and acc `[..., K]` after `fuse-grad-acc`) → `[..., K]`: dy·w + acc"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 3]
          %w = param {init: zeros} : f32[3, 4]
          %acc = input : f32[B, 4]
          %0 = linear_grad_input(%dy, %w, %acc) {accumulate: true} : f32[B, 4]
          output d = %0
        }
        """
    public let arity = 2...3
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.gradient, .accumulates]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (dy, w) = (ops[0], ops[1])
        guard w.shape.rank == 2, dy.shape.last == w.shape.dims[0] else { throw TypeError("linear_grad_input: dy \(dy.shape) does not match weight \(w.shape)") }
        return TensorType(dy.dtype, dy.shape.dims.dropLast() + [w.shape.dims[1]])
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 2 * c.out * c.dim(c.operands[0].shape.last!) + c.accumulate }
}

/// `linear_grad_weight(%dy: [..., N], %x: [..., K]) -> [N, K]` — dyᵀ·x over all rows, the weight gradient of `linear`.
public struct LinearGradWeight: Op {
    public init() {}
    public let name = "linear_grad_weight"
    public let summary = "dy `[..., N]`, x `[..., K]` → `[N, K]`: dyᵀ·x summed over the rows"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 3]
          %x = input : f32[B, 4]
          %0 = linear_grad_weight(%dy, %x) : f32[3, 4]
          output d = %0
        }
        """
    public let arity = 2...2
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (dy, x) = (ops[0], ops[1])
        guard dy.shape.rank == x.shape.rank, Array(dy.shape.dims.dropLast()) == Array(x.shape.dims.dropLast()),
              let n = dy.shape.last, let k = x.shape.last else {
            throw TypeError("linear_grad_weight: dy \(dy.shape) does not match x \(x.shape)")
        }
        return TensorType(dy.dtype, [n, k])
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int {
        let rows = c.count(0) / c.dim(c.operands[0].shape.last!)
        return 2 * c.out * rows
    }
}

extension OpKind {
    public static let linear = OpKind("linear")
    public static let linearStack = OpKind("linear_stack")
    public static let linearGradInput = OpKind("linear_grad_input")
    public static let linearGradWeight = OpKind("linear_grad_weight")
}
