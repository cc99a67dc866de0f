import KilnBasics

/// A token of the model language.
public struct Token: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case ident(String)
        case int(Int)
        case float(Double)
        /// A quoted text on one line (`"h.*.attn.c_attn.weight"`), without its quotes.
        case string(String)
        /// Punctuation and operators: ( ) [ ] { } , : = + - * / -> <= ;
        case punct(String)
        case eof
    }
    public var kind: Kind
    public var range: SourceRange
    /// True when no other token precedes it on its line (used for error recovery).
    public var startsLine: Bool
}

/// Splits a source file into tokens. `#` starts a comment to the end of the
/// line. Bad bytes (invalid UTF-8, stray characters) are reported once per
/// run and skipped, so lexing always finishes.
public struct Lexer {
    public static func tokenize(_ file: SourceFile, _ diags: DiagnosticEngine) -> [Token] {
        let b = file.bytes
        var toks: [Token] = []
        var i = 0
        var lineStart = true
        func isAlpha(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 }
        func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
        while i < b.count {
            let c = b[i]
            if c == 10 { lineStart = true; i += 1; continue }
            if c == 32 || c == 9 || c == 13 { i += 1; continue }
            if c == 35 {  // '#' comment
                while i < b.count, b[i] != 10 { i += 1 }
                continue
            }
            let start = i
            if c == 34 {  // '"' a quoted text, ending on its line
                i += 1
                while i < b.count, b[i] != 34, b[i] != 10 { i += 1 }
                let text = String(decoding: b[(start + 1)..<i], as: UTF8.self)
                if i < b.count, b[i] == 34 {
                    i += 1
                    if text.unicodeScalars.contains("\u{FFFD}") { diags.error("invalid UTF-8 in source", at: SourceRange(start, i)) }
                } else {
                    diags.error("unterminated text: a '\"' is missing before the end of the line", at: SourceRange(start, i))
                }
                toks.append(Token(kind: .string(text), range: SourceRange(start, i), startsLine: lineStart))
            } else if isAlpha(c) {
                while i < b.count, isAlpha(b[i]) || isDigit(b[i]) { i += 1 }
                toks.append(Token(kind: .ident(String(decoding: b[start..<i], as: UTF8.self)), range: SourceRange(start, i), startsLine: lineStart))
            } else if isDigit(c) || (c == 46 && i + 1 < b.count && isDigit(b[i + 1])) {
                var isFloat = false
                if c == 46 { isFloat = true; i += 1 }
                while i < b.count, isDigit(b[i]) || b[i] == 95 { i += 1 }
                if i < b.count, b[i] == 46, i + 1 < b.count, isDigit(b[i + 1]) {
                    isFloat = true; i += 1
                    while i < b.count, isDigit(b[i]) { i += 1 }
                }
                if i < b.count, b[i] == 101 || b[i] == 69 {
                    var j = i + 1
                    if j < b.count, b[j] == 43 || b[j] == 45 { j += 1 }
                    if j < b.count, isDigit(b[j]) {
                        isFloat = true; i = j
                        while i < b.count, isDigit(b[i]) { i += 1 }
                    }
                }
                let text = String(decoding: b[start..<i].filter { $0 != 95 }, as: UTF8.self)
                let range = SourceRange(start, i)
                if i < b.count, isAlpha(b[i]) {
                    while i < b.count, isAlpha(b[i]) || isDigit(b[i]) { i += 1 }
                    diags.error("invalid number '\(String(decoding: b[start..<i], as: UTF8.self))'", at: SourceRange(start, i))
                    toks.append(Token(kind: .int(0), range: SourceRange(start, i), startsLine: lineStart))
                } else if isFloat {
                    let v = Double(text) ?? .infinity
                    if !v.isFinite { diags.error("number '\(text)' is too large", at: range) }
                    toks.append(Token(kind: .float(v.isFinite ? v : 0), range: range, startsLine: lineStart))
                } else if let v = Int(text) {
                    toks.append(Token(kind: .int(v), range: range, startsLine: lineStart))
                } else {
                    diags.error("integer '\(text.prefix(40))\(text.count > 40 ? "…" : "")' is too large", at: range)
                    toks.append(Token(kind: .int(0), range: range, startsLine: lineStart))
                }
            } else if let p = Self.punct(b, i) {
                i += p.utf8.count
                toks.append(Token(kind: .punct(p), range: SourceRange(start, i), startsLine: lineStart))
            } else {
                // Skip a run of bad bytes and report it once.
                var isUTF8Problem = c >= 0x80
                i += 1
                while i < b.count, b[i] >= 0x80 { isUTF8Problem = true; i += 1 }
                let text = String(decoding: b[start..<i], as: UTF8.self)
                if isUTF8Problem && text.unicodeScalars.contains("\u{FFFD}") {
                    diags.error("invalid UTF-8 in source", at: SourceRange(start, i))
                } else {
                    diags.error("unexpected character '\(text.prefix(8))'", at: SourceRange(start, i))
                }
            }
            lineStart = false
            if diags.isFull { break }
        }
        toks.append(Token(kind: .eof, range: SourceRange(b.count, b.count), startsLine: true))
        return toks
    }

    private static let puncts2 = ["->", "<=", ">=", "==", "!="]
    private static let puncts1 = Set("()[]{},:=+-*/;<>".utf8)

    private static func punct(_ b: [UInt8], _ i: Int) -> String? {
        if i + 1 < b.count {
            let two = String(decoding: b[i...i + 1], as: UTF8.self)
            if puncts2.contains(two) { return two }
        }
        return puncts1.contains(b[i]) ? String(UnicodeScalar(b[i])) : nil
    }
}
