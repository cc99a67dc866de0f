import KilnBasics

/// An attribute value of an op, printed inside `{...}` in the IR text.
public enum AttrValue: Sendable, Hashable, CustomStringConvertible {
    case int(Int)
    case float(Double)
    case bool(Bool)
    /// A bare identifier: an enum-like word (`normal`) or a symbolic dim name (`T`).
    case word(String)
    /// A quoted text (`"mul(x0, x1)"`, a fused op's expression); it holds no `"` and no line break.
    case string(String)

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .float(let v):
            // Swift prints the shortest text that parses back to the same Double.
            let s = String(v)
            return s.contains(".") || s.contains("e") || s.contains("n") || s.contains("i") ? s : s + ".0"
        case .bool(let v): return v ? "true" : "false"
        case .word(let w): return w
        case .string(let t): return "\"" + t + "\""
        }
    }
}

/// An ordered attribute list (order is kept so printing is stable).
public struct Attributes: Sendable, Hashable {
    public var entries: [(String, AttrValue)] = []
    public init(_ entries: [(String, AttrValue)] = []) { self.entries = entries }

    public subscript(_ key: String) -> AttrValue? {
        get { entries.first { $0.0 == key }?.1 }
        set {
            if let i = entries.firstIndex(where: { $0.0 == key }) {
                if let v = newValue { entries[i].1 = v } else { entries.remove(at: i) }
            } else if let v = newValue { entries.append((key, v)) }
        }
    }

    public func int(_ key: String) -> Int? { if case .int(let v)? = self[key] { v } else { nil } }
    public func bool(_ key: String) -> Bool? { if case .bool(let v)? = self[key] { v } else { nil } }
    public func word(_ key: String) -> String? { if case .word(let v)? = self[key] { v } else { nil } }
    public func string(_ key: String) -> String? { if case .string(let v)? = self[key] { v } else { nil } }
    public func float(_ key: String) -> Double? {
        switch self[key] { case .float(let v)?: v; case .int(let v)?: Double(v); default: nil }
    }
    /// A dimension attribute: an integer or a symbol name.
    public func dim(_ key: String) -> Dim? {
        switch self[key] { case .int(let v)?: .const(v); case .word(let s)?: .sym(s); default: nil }
    }

    public static func == (a: Attributes, b: Attributes) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }
    public func hash(into h: inout Hasher) {
        for (k, v) in entries { h.combine(k); h.combine(v) }
    }
    public var isEmpty: Bool { entries.isEmpty }
}
