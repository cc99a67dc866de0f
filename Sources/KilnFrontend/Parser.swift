import KilnBasics

/// Recursive-descent parser for the model language (grammar in docs/language.md).
///
/// Errors are recorded, then the parser skips to the next token that starts
/// a line and goes on, so one run reports several errors. Nesting is bounded,
/// so no input can exhaust the stack.
public struct Parser {
    private var toks: [Token]
    private var p = 0
    private let diags: DiagnosticEngine
    private var depth = 0
    static let maxDepth = 200
    /// Words that start declarations and statements; they are not names.
    static let keywords: Set<String> = ["model", "config", "input", "block", "return", "output", "where", "train", "weights"]

    private struct Bail: Error {}

    public static func parse(_ file: SourceFile, _ diags: DiagnosticEngine) -> Program {
        var parser = Parser(toks: Lexer.tokenize(file, diags), diags: diags)
        return parser.parseProgram()
    }

    private init(toks: [Token], diags: DiagnosticEngine) { self.toks = toks; self.diags = diags }

    // MARK: token helpers

    private var tok: Token { toks[p] }
    private mutating func bump() { if p < toks.count - 1 { p += 1 } }
    private func isPunct(_ s: String) -> Bool { tok.kind == .punct(s) }
    private func isWord(_ s: String) -> Bool { tok.kind == .ident(s) }

    private func describe(_ t: Token) -> String {
        switch t.kind {
        case .ident(let s): "'\(s)'"
        case .int(let v): "'\(v)'"
        case .float(let v): "'\(v)'"
        case .string(let v): "\"\(v)\""
        case .punct(let s): "'\(s)'"
        case .eof: "end of file"
        }
    }

    private mutating func fail(_ msg: String, at r: SourceRange? = nil) -> Bail {
        diags.error(msg, at: r ?? tok.range)
        return Bail()
    }

    private mutating func expect(_ s: String, _ context: String) throws {
        guard isPunct(s) else { throw fail("expected '\(s)' \(context), found \(describe(tok))") }
        bump()
    }

    private mutating func ident(_ what: String) throws -> (String, SourceRange) {
        guard case .ident(let s) = tok.kind else { throw fail("expected \(what), found \(describe(tok))") }
        let r = tok.range
        bump()
        return (s, r)
    }

    /// Skips to the next token that starts a line (or a closing brace at depth 0).
    private mutating func recover() {
        bump()
        while tok.kind != .eof && !tok.startsLine { bump() }
    }

    // MARK: program

    mutating func parseProgram() -> Program {
        var prog = Program()
        if isWord("model") {
            bump()
            if let (n, r) = try? ident("a model name") { prog.modelName = n; prog.modelRange = r } else { recover() }
        } else {
            diags.error("a model file starts with 'model NAME'", at: tok.range)
        }
        while tok.kind != .eof && !diags.isFull {
            let before = p
            do {
                switch tok.kind {
                case .ident("config"): prog.config += try parseConfig()
                case .ident("train"):
                    if prog.train != nil { throw fail("only one 'train' section is allowed") }
                    prog.trainRange = tok.range
                    prog.train = try parseConfig()
                case .ident("weights"):
                    if prog.weights != nil { throw fail("only one 'weights' section is allowed") }
                    prog.weights = try parseWeights()
                case .ident("input"): prog.inputs.append(try parseInput())
                case .ident("block"): prog.blocks.append(try parseBlock())
                case .ident("model"): throw fail("only one 'model' line is allowed")
                case .ident("return"): throw fail("'return' is only allowed inside a block")
                default: prog.statements.append(try parseStatement(inBlock: false))
                }
            } catch {
                if p == before || !tok.startsLine { recover() }
            }
        }
        return prog
    }

    private mutating func parseConfig() throws -> [ConfigEntry] {
        let what = describe(tok)
        bump()
        try expect("{", "after \(what)")
        var entries: [ConfigEntry] = []
        while !isPunct("}") {
            if tok.kind == .eof { throw fail("unterminated config: expected '}'") }
            if isPunct(",") || isPunct(";") { bump(); continue }
            let before = p
            do {
                let (name, r) = try ident("a config name")
                try expect("=", "after config name '\(name)'")
                entries.append(ConfigEntry(name: name, range: r, value: try parseExpr()))
            } catch {
                if p == before { bump() }  // always make progress
                while !isPunct("}") && tok.kind != .eof && !tok.startsLine { bump() }
                if diags.isFull { throw error }
            }
        }
        bump()
        return entries
    }

    /// `weights { "PATTERN" = SOURCE … ignore "PATTERN", … }`
    private mutating func parseWeights() throws -> WeightsSection {
        var section = WeightsSection(range: tok.range)
        bump()
        try expect("{", "after 'weights'")
        while !isPunct("}") {
            if tok.kind == .eof { throw fail("unterminated weights section: expected '}'") }
            if isPunct(",") || isPunct(";") { bump(); continue }
            let before = p
            do {
                if isWord("ignore") {
                    bump()
                    repeat {
                        if isPunct(",") { bump() }
                        guard case .string(let s) = tok.kind else { throw fail("expected a quoted tensor name pattern after 'ignore', found \(describe(tok))") }
                        section.ignore.append((s, tok.range))
                        bump()
                    } while isPunct(",")
                    continue
                }
                guard case .string(let pattern) = tok.kind else {
                    throw fail("expected a quoted parameter name pattern such as \"layers.*.attention.query.weight\", found \(describe(tok))")
                }
                let r = tok.range
                bump()
                try expect("=", "after the parameter pattern (write \"PARAMETER\" = \"TENSOR IN THE FILE\")")
                section.entries.append(WeightEntry(pattern: pattern, range: r, source: try parseWeightSource()))
            } catch {
                if p == before { bump() }  // always make progress
                while !isPunct("}") && tok.kind != .eof && !tok.startsLine { bump() }
                if diags.isFull { throw error }
            }
        }
        bump()
        return section
    }

    /// `"TENSOR"`, `transpose(SOURCE)` or `slice(SOURCE, axis: A, start: S, size: N)`.
    private mutating func parseWeightSource() throws -> WeightSourceExpr {
        depth += 1
        defer { depth -= 1 }
        guard depth < Self.maxDepth else { throw fail("expression is nested too deeply (limit \(Self.maxDepth))") }
        let t = tok
        if case .string(let s) = t.kind { bump(); return .tensor(s, t.range) }
        guard case .ident(let f) = t.kind, f == "transpose" || f == "slice" else {
            throw fail("expected a quoted tensor name, transpose(…) or slice(…, axis: A, start: S, size: N), found \(describe(t))")
        }
        bump()
        try expect("(", "after '\(f)'")
        let inner = try parseWeightSource()
        var named: [String: Expr] = [:]
        while isPunct(",") {
            bump()
            guard case .ident(let l) = tok.kind, toks[p + 1].kind == .punct(":") else { throw fail("expected 'axis:', 'start:' or 'size:' in \(f)(…), found \(describe(tok))") }
            guard f == "slice", ["axis", "start", "size"].contains(l) else { throw fail("\(f) takes no argument '\(l)'") }
            guard named[l] == nil else { throw fail("argument '\(l)' is given twice") }
            bump(); bump()
            named[l] = try parseExpr()
        }
        let end = tok.range.end
        try expect(")", "to close '\(f)('")
        let r = SourceRange(t.range.start, end)
        if f == "transpose" { return .transpose(inner, r) }
        guard let axis = named["axis"], let start = named["start"], let size = named["size"] else {
            throw fail("slice needs axis:, start: and size:", at: r)
        }
        return .slice(inner, axis: axis, start: start, size: size, r)
    }

    private mutating func parseInput() throws -> InputDecl {
        bump()
        let (name, r) = try ident("an input name")
        try expect(":", "after input name")
        let type = try parseType()
        var bounds: [(String, Expr, SourceRange)] = []
        if isWord("where") {
            bump()
            repeat {
                if isPunct(",") { bump() }
                let (d, dr) = try ident("a dimension name")
                try expect("<=", "in a dimension bound (write 'T <= context')")
                bounds.append((d, try parseExpr(), dr))
            } while isPunct(",")
        }
        return InputDecl(name: name, range: r, type: type, bounds: bounds)
    }

    private mutating func parseType() throws -> TypeExpr {
        let (dt, dr) = try ident("a tensor type such as f32[B, T, dim]")
        try expect("[", "after the dtype '\(dt)'")
        var dims: [Expr] = []
        while !isPunct("]") {
            dims.append(try parseExpr())
            if isPunct(",") { bump() } else if !isPunct("]") { throw fail("expected ',' or ']' in a shape, found \(describe(tok))") }
        }
        let end = tok.range.end
        bump()
        return TypeExpr(dtype: dt, dtypeRange: dr, dims: dims, range: SourceRange(dr.start, end))
    }

    private mutating func parseBlock() throws -> BlockDecl {
        bump()
        let (name, r) = try ident("a block name")
        try expect("(", "after block name")
        var params: [BlockParam] = []
        while !isPunct(")") {
            let (pn, pr) = try ident("a parameter name")
            try expect(":", "after parameter '\(pn)'")
            params.append(BlockParam(name: pn, range: pr, type: try parseType()))
            if isPunct(",") { bump() } else if !isPunct(")") { throw fail("expected ',' or ')' after a parameter, found \(describe(tok))") }
        }
        bump()
        try expect("->", "before the block's result type")
        let result = try parseType()
        try expect("{", "to open the block body")
        var body: [Statement] = []
        while !isPunct("}") {
            if tok.kind == .eof { throw fail("unterminated block '\(name)': expected '}'") }
            if isWord("block") || isWord("config") || isWord("input") || isWord("train") || isWord("weights") { throw fail("missing '}' at the end of block '\(name)'") }
            if isPunct(";") { bump(); continue }
            let before = p
            do { body.append(try parseStatement(inBlock: true)) } catch {
                if diags.isFull { throw error }
                if p == before || !tok.startsLine { recover() }
            }
        }
        bump()
        return BlockDecl(name: name, range: r, params: params, result: result, body: body)
    }

    private mutating func parseStatement(inBlock: Bool) throws -> Statement {
        if isWord("return") {
            let r = tok.range
            guard inBlock else { throw fail("'return' is only allowed inside a block") }
            bump()
            return .ret(try parseExpr(), r)
        }
        if isWord("output") {
            let r = tok.range
            bump()
            guard !inBlock else { throw fail("'output' is only allowed at the top level", at: r) }
            let (name, nr) = try ident("an output name")
            try expect("=", "after output name")
            _ = r
            return .output(name, nr, try parseExpr())
        }
        let (name, r) = try ident("a statement (NAME = expression)")
        try expect("=", "after '\(name)' (statements look like 'NAME = expression')")
        return .assign(name, r, try parseExpr())
    }

    // MARK: expressions

    /// Comparisons bind loosest and do not chain: `a + b < c` is `(a + b) < c`; `a < b < c` is an error.
    static let comparisons: Set<String> = ["<", "<=", ">", ">=", "==", "!="]

    mutating func parseExpr() throws -> Expr {
        depth += 1
        defer { depth -= 1 }
        guard depth < Self.maxDepth else { throw fail("expression is nested too deeply (limit \(Self.maxDepth))") }
        let lhs = try parseSum()
        guard case .punct(let op) = tok.kind, Self.comparisons.contains(op) else { return lhs }
        bump()
        let rhs = try parseSum()
        if case .punct(let next) = tok.kind, Self.comparisons.contains(next) {
            throw fail("comparisons do not chain: write (a \(op) b) * (b \(next) c)")
        }
        return .binary(op, lhs, rhs, SourceRange(lhs.range.start, rhs.range.end))
    }

    private mutating func parseSum() throws -> Expr {
        var lhs = try parseTerm()
        while isPunct("+") || isPunct("-") {
            guard case .punct(let op) = tok.kind else { break }
            bump()
            let rhs = try parseTerm()
            lhs = .binary(op, lhs, rhs, SourceRange(lhs.range.start, rhs.range.end))
        }
        return lhs
    }

    private mutating func parseTerm() throws -> Expr {
        var lhs = try parseUnary()
        while isPunct("*") || isPunct("/") {
            guard case .punct(let op) = tok.kind else { break }
            bump()
            let rhs = try parseUnary()
            lhs = .binary(op, lhs, rhs, SourceRange(lhs.range.start, rhs.range.end))
        }
        return lhs
    }

    private mutating func parseUnary() throws -> Expr {
        if isPunct("-") {
            let r = tok.range
            bump()
            depth += 1
            defer { depth -= 1 }
            guard depth < Self.maxDepth else { throw fail("expression is nested too deeply (limit \(Self.maxDepth))") }
            let e = try parseUnary()
            return .unary("-", e, SourceRange(r.start, e.range.end))
        }
        return try parsePrimary()
    }

    private mutating func parsePrimary() throws -> Expr {
        let t = tok
        switch t.kind {
        case .int(let v): bump(); return .int(v, t.range)
        case .float(let v): bump(); return .float(v, t.range)
        case .string(let v): bump(); return .string(v, t.range)
        case .ident(let name):
            // `where(c, a, b)` is the select function; the keyword `where` bounds a dimension after an input's type
            if Self.keywords.contains(name) && !(name == "where" && toks[p + 1].kind == .punct("(")) {
                throw fail("expected an expression, found the keyword '\(name)'")
            }
            bump()
            guard isPunct("(") else { return .name(name, t.range) }
            bump()
            var args: [Argument] = []
            while !isPunct(")") {
                if tok.kind == .eof { throw fail("expected ')' to close the call to '\(name)'") }
                var label: String? = nil
                var lr = tok.range
                if case .ident(let l) = tok.kind, toks[p + 1].kind == .punct(":") {
                    label = l; lr = tok.range; bump(); bump()
                }
                if label == "name", case .ident(let n) = tok.kind, [.punct(","), .punct(")")].contains(toks[p + 1].kind) {
                    // a parameter owner may be any identifier, a keyword too (`name: output`, the built-in's name)
                    args.append(Argument(label: label, labelRange: lr, value: .name(n, tok.range)))
                    bump()
                } else {
                    args.append(Argument(label: label, labelRange: lr, value: try parseExpr()))
                }
                if isPunct(",") { bump() } else if !isPunct(")") { throw fail("expected ',' or ')' in the call to '\(name)', found \(describe(tok))") }
            }
            let end = tok.range.end
            bump()
            return .call(name, t.range, args, SourceRange(t.range.start, end))
        case .punct("("):
            bump()
            let e = try parseExpr()
            try expect(")", "to close '('")
            return e
        default:
            throw fail("expected an expression, found \(describe(t))")
        }
    }
}
