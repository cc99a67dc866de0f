import KilnBasics

/// Parses Kiln's textual IR (the format `IRPrinter` writes) back into a
/// graph, then verifies it. Errors carry `line:col`.
public struct IRParser {
    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var line: Int, column: Int, message: String
        public var description: String { "\(line):\(column): error: \(message)" }
    }

    enum Tok: Equatable {
        case ident(String), value(String), number(String), string(String), punct(String), eof
    }

    private let src: [UInt8]
    private var pos = 0
    private var tok: Tok = .eof
    private var tokStart = 0

    public static func parse(_ text: String) throws -> Graph {
        var p = IRParser(src: Array(text.utf8))
        try p.advance()
        let g = try p.parseGraph()
        do { try Verifier.verify(g) } catch let f as Verifier.Failure {
            throw ParseError(line: 1, column: 1, message: "invalid graph: " + f.messages.joined(separator: "; "))
        }
        return g
    }

    private init(src: [UInt8]) { self.src = src }

    private func fail(_ msg: String) -> ParseError {
        var line = 1, col = 1
        for b in src[0..<min(tokStart, src.count)] { if b == 10 { line += 1; col = 1 } else { col += 1 } }
        return ParseError(line: line, column: col, message: msg)
    }

    private static func isIdent(_ b: UInt8) -> Bool {
        (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || (b >= 48 && b <= 57) || b == 95 || b == 46
    }

    private mutating func advance() throws {
        while pos < src.count {
            if src[pos] == 32 || src[pos] == 9 || src[pos] == 10 || src[pos] == 13 { pos += 1; continue }
            if src[pos] == 47, pos + 1 < src.count, src[pos + 1] == 47 {  // `//` comment
                while pos < src.count, src[pos] != 10 { pos += 1 }
                continue
            }
            break
        }
        tokStart = pos
        guard pos < src.count else { tok = .eof; return }
        let c = src[pos]
        if c == 37 {  // %name
            pos += 1
            let s = pos
            while pos < src.count, Self.isIdent(src[pos]) { pos += 1 }
            guard pos > s else { throw fail("expected a value name after '%'") }
            tok = .value(String(decoding: src[s..<pos], as: UTF8.self))
        } else if (c >= 48 && c <= 57) || c == 45 {
            let s = pos
            pos += 1
            while pos < src.count, Self.isIdent(src[pos]) || ((src[pos] == 45 || src[pos] == 43) && (src[pos - 1] == 101 || src[pos - 1] == 69)) { pos += 1 }
            tok = .number(String(decoding: src[s..<pos], as: UTF8.self))
        } else if Self.isIdent(c) {
            let s = pos
            while pos < src.count, Self.isIdent(src[pos]) { pos += 1 }
            tok = .ident(String(decoding: src[s..<pos], as: UTF8.self))
        } else if c == 34 {  // "text" (no escapes, no line breaks)
            pos += 1
            let s = pos
            while pos < src.count, src[pos] != 34, src[pos] != 10 { pos += 1 }
            guard pos < src.count, src[pos] == 34 else { throw fail("unterminated string") }
            tok = .string(String(decoding: src[s..<pos], as: UTF8.self))
            pos += 1
        } else if c == 60, pos + 1 < src.count, src[pos + 1] == 61 {
            pos += 2; tok = .punct("<=")
        } else if "{}()[],:=".utf8.contains(c) {
            pos += 1; tok = .punct(String(UnicodeScalar(c)))
        } else {
            throw fail("unexpected character")
        }
    }

    private mutating func expect(_ p: String) throws {
        guard tok == .punct(p) else { throw fail("expected '\(p)'") }
        try advance()
    }
    private mutating func expectIdent() throws -> String {
        guard case .ident(let s) = tok else { throw fail("expected an identifier") }
        try advance()
        return s
    }
    private mutating func expectInt() throws -> Int {
        guard case .number(let s) = tok, let v = Int(s) else { throw fail("expected an integer") }
        try advance()
        return v
    }

    private mutating func parseGraph() throws -> Graph {
        guard try expectIdent() == "graph" else { throw fail("expected 'graph'") }
        // `graph Model` is a model's forward pass; `graph Model.decode_step` names another of its functions
        let qualified = try expectIdent()
        var g = Graph(name: qualified)
        if let dot = qualified.lastIndex(of: ".") {
            g.name = String(qualified[..<dot])
            g.function = String(qualified[qualified.index(after: dot)...])
            guard !g.name.isEmpty, !g.function.isEmpty else { throw fail("expected 'graph MODEL' or 'graph MODEL.FUNCTION'") }
        }
        try expect("{")
        var values: [String: Int] = [:]
        while tok != .punct("}") {
            switch tok {
            case .ident("dim"):
                try advance()
                let name = try expectIdent()
                var bound: Int? = nil
                if tok == .punct("<=") { try advance(); bound = try expectInt() }
                g.dims.append(SymbolicDim(name, bound: bound))
            case .ident("output"):
                try advance()
                let name = try expectIdent()
                try expect("=")
                guard case .value(let v) = tok, let idx = values[v] else { throw fail("unknown value in output") }
                try advance()
                g.outputs.append(GraphOutput(name: name, value: idx))
            case .value(let lhs):
                try advance()
                guard values[lhs] == nil else { throw fail("value %\(lhs) is defined twice") }
                try expect("=")
                let opName = try expectIdent()
                guard let kind = OpKind(rawValue: opName) else { throw fail("unknown op '\(opName)'") }
                var operands: [Int] = []
                if tok == .punct("(") {
                    try advance()
                    while tok != .punct(")") {
                        guard case .value(let v) = tok, let idx = values[v] else { throw fail("unknown operand") }
                        operands.append(idx)
                        try advance()
                        if tok == .punct(",") { try advance() } else { break }
                    }
                    try expect(")")
                }
                var attrs = Attributes()
                if tok == .punct("{") {
                    try advance()
                    while tok != .punct("}") {
                        let key = try expectIdent()
                        try expect(":")
                        guard attrs[key] == nil else { throw fail("duplicate attribute '\(key)'") }
                        attrs[key] = try parseAttr()
                        if tok == .punct(",") { try advance() } else { break }
                    }
                    try expect("}")
                }
                try expect(":")
                let type = try parseType()
                let name: String? = kind.hasDeclaredType ? lhs : nil
                values[lhs] = g.add(Node(kind, operands, attrs: attrs, type: type, name: name))
            default:
                throw fail("expected 'dim', 'output' or a value definition")
            }
        }
        try advance()
        guard tok == .eof else { throw fail("unexpected text after the graph") }
        return g
    }

    private mutating func parseAttr() throws -> AttrValue {
        switch tok {
        case .number(let s):
            try advance()
            if let i = Int(s) { return .int(i) }
            if let d = Double(s) { return .float(d) }
            throw fail("bad number '\(s)'")
        case .ident("true"): try advance(); return .bool(true)
        case .ident("false"): try advance(); return .bool(false)
        case .ident(let w): try advance(); return .word(w)
        case .string(let t): try advance(); return .string(t)
        default: throw fail("expected an attribute value")
        }
    }

    private mutating func parseType() throws -> TensorType {
        let dt = try expectIdent()
        guard let dtype = DType(rawValue: dt) else { throw fail("unknown dtype '\(dt)'") }
        try expect("[")
        var dims: [Dim] = []
        while tok != .punct("]") {
            switch tok {
            case .number: dims.append(.const(try expectInt()))
            case .ident(let s): try advance(); dims.append(.sym(s))
            default: throw fail("expected a dimension")
            }
            if tok == .punct(",") { try advance() } else { break }
        }
        try expect("]")
        return TensorType(dtype, dims)
    }
}
