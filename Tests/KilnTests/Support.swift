import Foundation
import KilnBasics
import KilnIR
import KilnFrontend

/// The repository root (tests read the examples and the runtime from it).
let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

func readRepoFile(_ path: String) -> String {
    (try? String(contentsOfFile: repoRoot + "/" + path, encoding: .utf8)) ?? ""
}

/// Compiles source text; returns the graph (nil on errors) and rendered diagnostics.
func compile(_ text: String, path: String = "test.kiln", overrides: [(String, String)] = []) -> (Graph?, String, [Diagnostic]) {
    let file = SourceFile(path: path, text: text)
    guard let r = try? Frontend.compile(file, options: FrontendOptions(overrides: overrides)) else { return (nil, "option error", []) }
    return (r.graph, r.diagnostics.render(), r.diagnostics.diagnostics)
}

/// Parses IR text, checking print ∘ parse is the identity on it.
func parseIR(_ text: String) throws -> Graph {
    let g = try IRParser.parse(text)
    let printed = IRPrinter.print(g)
    let again = IRPrinter.print(try IRParser.parse(printed))
    precondition(printed == again, "IR does not round-trip")
    return g
}
