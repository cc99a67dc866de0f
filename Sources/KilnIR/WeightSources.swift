/// Where a model's parameters come from in a checkpoint written by another library (a Hugging Face
/// `model.safetensors`), as a model file's `weights { … }` section states it (docs/language.md). The
/// model's own names stay its names (checkpoints Kiln writes use them); the generated library also reads a
/// file that names the tensors this way, converting F16, BF16 and F64 to the model's floats.
public struct ParamSource: Sendable, Hashable {
    /// The tensor's name in the file (`"h.0.attn.c_attn.weight"`).
    public var tensor: String
    /// A slice of the file's tensor along this axis (of the file's tensor), from `sliceStart`; its size is
    /// the parameter's along the matching axis.
    public var sliceAxis: Int?
    public var sliceStart: Int
    /// Whether the (rank 2) tensor, after the slice, is transposed into the parameter.
    public var transposed: Bool

    public init(tensor: String, sliceAxis: Int? = nil, sliceStart: Int = 0, transposed: Bool = false) {
        self.tensor = tensor; self.sliceAxis = sliceAxis; self.sliceStart = sliceStart; self.transposed = transposed
    }

    /// The source as the model file writes it: `transpose(slice("h.0.attn.c_attn.weight", axis: 1, start: 0, size: 768))`.
    public func description(size: Int?) -> String {
        var s = "\"\(tensor)\""
        if let a = sliceAxis { s = "slice(\(s), axis: \(a), start: \(sliceStart), size: \(size.map(String.init) ?? "?"))" }
        return transposed ? "transpose(\(s))" : s
    }
}

/// The resolved weights section: a source for every parameter, and the patterns of the file's tensors the
/// model does not read (`*` matches any run of characters there).
public struct WeightSources: Sendable {
    /// By parameter name.
    public var params: [String: ParamSource]
    public var ignore: [String]
    public init(params: [String: ParamSource], ignore: [String]) { self.params = params; self.ignore = ignore }

    /// Matches `name` against a parameter pattern in which each `*` stands for a run of one or more
    /// characters other than '.'; returns what each `*` matched, in order, or nil.
    public static func match(_ pattern: String, _ name: String) -> [Substring]? {
        let parts = pattern.split(separator: "*", omittingEmptySubsequences: false)
        guard name.hasPrefix(parts[0]) else { return nil }
        var rest = name.dropFirst(parts[0].count)
        var captures: [Substring] = []
        for (i, part) in parts.enumerated().dropFirst() {
            // the capture runs to the next '.', or to the end for the last part
            let end = rest.firstIndex(of: ".") ?? rest.endIndex
            let capture = rest[rest.startIndex..<end]
            guard !capture.isEmpty else { return nil }
            captures.append(capture)
            rest = rest[end...]
            guard rest.hasPrefix(part) else { return nil }
            rest = rest.dropFirst(part.count)
            if i == parts.count - 1 && !rest.isEmpty { return nil }
        }
        if parts.count == 1 && !rest.isEmpty { return nil }
        return captures
    }

    /// `pattern` with its `*`s replaced by `captures`, in order.
    public static func substitute(_ pattern: String, _ captures: [Substring]) -> String {
        var out = "", k = 0
        for c in pattern {
            if c == "*" && k < captures.count { out += captures[k]; k += 1 } else { out.append(c) }
        }
        return out
    }
}
