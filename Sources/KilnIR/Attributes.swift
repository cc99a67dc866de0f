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

/// The kind of value an attribute holds (checked by the verifier against each op's `AttrSpec`s).
public enum AttrKind: Sendable, Equatable, CustomStringConvertible {
    case int, float, bool
    /// One of the listed words (any word when the list is empty).
    case word([String])
    /// A dimension: an integer or the name of a symbolic dim.
    case dim
    /// A quoted text.
    case string

    func accepts(_ v: AttrValue) -> Bool {
        switch (self, v) {
        case (.int, .int), (.bool, .bool), (.string, .string), (.dim, .int), (.dim, .word): return true
        case (.float, .float), (.float, .int): return true
        case (.word(let allowed), .word(let w)): return allowed.isEmpty || allowed.contains(w)
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .int: "an integer"
        case .float: "a number"
        case .bool: "true or false"
        case .word(let w): w.isEmpty ? "a word" : w.joined(separator: " or ")
        case .dim: "a dimension (an integer or a dim name)"
        case .string: "a quoted text"
        }
    }
}

/// One attribute an op takes: its name, kind, and default (nil: the attribute is required).
public struct AttrSpec: Sendable {
    public var name: String
    public var kind: AttrKind
    public var defaultValue: AttrValue?
    /// An attribute without a default that a node may leave out (read it with `Attributes.value`).
    public var isOptional = false
    public var isRequired: Bool { defaultValue == nil && !isOptional }
}

/// A Swift type an attribute value converts to.
public protocol AttrConvertible: Sendable {
    static var attrKind: AttrKind { get }
    init?(attr: AttrValue)
    var attrValue: AttrValue { get }
}

extension Int: AttrConvertible {
    public static var attrKind: AttrKind { .int }
    public init?(attr: AttrValue) { if case .int(let v) = attr { self = v } else { return nil } }
    public var attrValue: AttrValue { .int(self) }
}
extension Double: AttrConvertible {
    public static var attrKind: AttrKind { .float }
    public init?(attr: AttrValue) {
        switch attr { case .float(let v): self = v; case .int(let v): self = Double(v); default: return nil }
    }
    public var attrValue: AttrValue { .float(self) }
}
extension Bool: AttrConvertible {
    public static var attrKind: AttrKind { .bool }
    public init?(attr: AttrValue) { if case .bool(let v) = attr { self = v } else { return nil } }
    public var attrValue: AttrValue { .bool(self) }
}
extension Dim: AttrConvertible {
    public static var attrKind: AttrKind { .dim }
    public init?(attr: AttrValue) {
        switch attr { case .int(let v): self = .const(v); case .word(let s): self = .sym(s); default: return nil }
    }
    public var attrValue: AttrValue { switch self { case .const(let n): .int(n); case .sym(let s): .word(s) } }
}

/// A word-valued attribute (`activation: gelu`, `wrt: q`).
public struct Word: AttrConvertible, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var text: String
    public init(_ text: String) { self.text = text }
    public init(stringLiteral s: String) { text = s }
    public static var attrKind: AttrKind { .word([]) }
    public init?(attr: AttrValue) { if case .word(let w) = attr { text = w } else { return nil } }
    public var attrValue: AttrValue { .word(text) }
    public var description: String { text }
}
/// A quoted-text attribute (a fused op's `expr`).
public struct Text: AttrConvertible, Hashable {
    public var text: String
    public init(_ text: String) { self.text = text }
    public static var attrKind: AttrKind { .string }
    public init?(attr: AttrValue) { if case .string(let t) = attr { text = t } else { return nil } }
    public var attrValue: AttrValue { .string(text) }
}

/// A typed attribute of an op, with its one default: `Attention.heads` is `AttrKey<Int>("heads")`, and
/// `node.attrs[Attention.heads]` reads it. The op lists `heads.spec` among its attributes, so the verifier
/// has checked that every node of the op holds a value of the right kind (or the default applies).
public struct AttrKey<Value: AttrConvertible>: Sendable {
    public let name: String
    public let defaultValue: Value?
    /// Words the attribute allows (for `Word` keys; empty: any).
    public let words: [String]
    /// No default, and nodes may leave it out: read with `Attributes.value(key)`.
    public let isOptional: Bool
    public init(_ name: String, default defaultValue: Value? = nil, words: [String] = [], optional: Bool = false) {
        self.name = name; self.defaultValue = defaultValue; self.words = words; self.isOptional = optional
    }
    public var spec: AttrSpec {
        var kind = Value.attrKind
        if case .word = kind { kind = .word(words) }
        return AttrSpec(name: name, kind: kind, defaultValue: defaultValue?.attrValue, isOptional: isOptional)
    }
}

extension Attributes {
    /// The attribute's value, or its default. Reading a required attribute that is missing is a bug in
    /// Kiln (the verifier rejects such nodes), so it stops the program.
    public subscript<V>(_ key: AttrKey<V>) -> V {
        if let v = self[key.name], let typed = V(attr: v) { return typed }
        guard let d = key.defaultValue else { preconditionFailure("attribute '\(key.name)' is missing or of the wrong kind") }
        return d
    }
    /// The attribute's value if it is set (nil when it is absent: the default applies).
    public func value<V>(_ key: AttrKey<V>) -> V? { self[key.name].flatMap { V(attr: $0) } }
    /// Sets (or with nil removes) a typed attribute.
    public mutating func set<V>(_ key: AttrKey<V>, _ value: V?) { self[key.name] = value?.attrValue }
    /// These attributes without the given ones (an op's type rule reusing another op's).
    public func removing(_ specs: [AttrSpec]) -> Attributes {
        Attributes(entries.filter { e in !specs.contains { $0.name == e.0 } })
    }
}
