/// Diagnostics are data: the parser and checkers append them, and a
/// renderer turns them into `file:line:col: error: message` with the source
/// line and a caret, the way compilers print them.
public enum Severity: String, Sendable { case error, warning, note }

public struct Diagnostic: Sendable, Equatable {
    public var severity: Severity
    public var message: String
    public var range: SourceRange
    public init(_ severity: Severity, _ message: String, at range: SourceRange) {
        self.severity = severity; self.message = message; self.range = range
    }
}

/// Collects diagnostics for one source file.
public final class DiagnosticEngine {
    public let file: SourceFile
    public private(set) var diagnostics: [Diagnostic] = []
    /// Stop collecting after this many errors (the rest add noise, not information).
    public let limit: Int

    public init(file: SourceFile, limit: Int = 50) { self.file = file; self.limit = limit }

    public var errorCount: Int { diagnostics.filter { $0.severity == .error }.count }
    public var hasErrors: Bool { errorCount > 0 }
    public var isFull: Bool { errorCount >= limit }

    public func error(_ message: String, at range: SourceRange) {
        guard !isFull else { return }
        // The same message at the same place adds nothing.
        if diagnostics.contains(where: { $0.range == range && $0.message == message }) { return }
        diagnostics.append(Diagnostic(.error, message, at: range))
    }

    public func note(_ message: String, at range: SourceRange) {
        diagnostics.append(Diagnostic(.note, message, at: range))
    }

    /// Renders every diagnostic as `file:line:col: severity: message`, the line and a caret.
    public func render() -> String {
        diagnostics.sorted { $0.range.start < $1.range.start }.map(render).joined()
            + (isFull ? "\(file.path): note: too many errors, stopping\n" : "")
    }

    public func render(_ d: Diagnostic) -> String {
        let (line, col) = file.lineColumn(of: d.range.start)
        let text = file.lineText(line)
        let (endLine, endCol) = file.lineColumn(of: d.range.end)
        var width = 1
        if endLine == line, endCol > col { width = endCol - col }
        // Show tabs as tabs so the caret lines up in a terminal.
        var pad = ""
        for (i, ch) in text.enumerated() where i < col - 1 { pad.append(ch == "\t" ? "\t" : " ") }
        let caret = pad + "^" + String(repeating: "~", count: max(0, min(width, 200) - 1))
        return "\(file.path):\(line):\(col): \(d.severity.rawValue): \(d.message)\n\(text)\n\(caret)\n"
    }
}
