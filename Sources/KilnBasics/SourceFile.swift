/// A source file held in memory, with line lookup for diagnostics.
///
/// Text is kept as UTF-8 bytes; invalid UTF-8 is tolerated here and reported
/// by the lexer, so no input can make line lookup fail.
public struct SourceFile: Sendable {
    public let path: String
    public let bytes: [UInt8]
    /// Byte offset where each line starts.
    public let lineStarts: [Int]

    public init(path: String, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
        var starts = [0]
        for (i, b) in bytes.enumerated() where b == UInt8(ascii: "\n") { starts.append(i + 1) }
        self.lineStarts = starts
    }

    public init(path: String, text: String) { self.init(path: path, bytes: Array(text.utf8)) }

    /// 1-based line and column (in characters, counting a tab as one) of a byte offset.
    public func lineColumn(of offset: Int) -> (line: Int, column: Int) {
        let off = max(0, min(offset, bytes.count))
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= off { lo = mid } else { hi = mid - 1 }
        }
        // Column counts UTF-8 scalar starts (not continuation bytes).
        var col = 1
        var i = lineStarts[lo]
        while i < off { if bytes[i] & 0xC0 != 0x80 { col += 1 }; i += 1 }
        return (lo + 1, col)
    }

    /// The text of a 1-based line without its newline, with invalid UTF-8 replaced.
    public func lineText(_ line: Int) -> String {
        guard line >= 1, line <= lineStarts.count else { return "" }
        let start = lineStarts[line - 1]
        var end = line < lineStarts.count ? lineStarts[line] - 1 : bytes.count
        if end > start, bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        return String(decoding: bytes[start..<max(start, end)], as: UTF8.self)
    }
}

/// A half-open byte range in a source file.
public struct SourceRange: Sendable, Equatable, Hashable {
    public var start: Int
    public var end: Int
    public init(_ start: Int, _ end: Int) { self.start = start; self.end = max(start, end) }
    public static let none = SourceRange(0, 0)
}
