import KilnBasics
import KilnFrontend
import KilnIR
import Foundation
let path = CommandLine.arguments[1]
let data = FileManager.default.contents(atPath: path)!
let r = try Frontend.compile(SourceFile(path: path, bytes: Array(data)))
print(r.diagnostics.render(), terminator: "")
if let g = r.graph { print(IRPrinter.print(g)); let g2 = try IRParser.parse(IRPrinter.print(g)); print(IRPrinter.print(g2) == IRPrinter.print(g)) }
