import Foundation
import Testing
import KilnBasics
import KilnIR
import KilnDriver

/// Golden files: Golden/tiny.kiln's IR at each stage of each function and its generated C, checked in beside
/// it. A change to the compiler's output fails here until the files are re-recorded:
///
///     KILN_RECORD=1 swift test --filter GoldenTests
///
/// and the diff of Tests/KilnTests/Golden/ goes into the commit, where a reviewer reads it.
@Suite struct GoldenTests {
    static let directory = repoRoot + "/Tests/KilnTests/Golden"
    static let record = ProcessInfo.processInfo.environment["KILN_RECORD"] == "1"

    static func tiny() throws -> (SourceFile, Pipeline) {
        let text = try String(contentsOfFile: directory + "/tiny.kiln", encoding: .utf8)
        return (SourceFile(path: "tiny.kiln", text: text), Pipeline())
    }

    /// Compares `text` with the golden file `name` (or rewrites it when recording).
    static func check(_ name: String, _ text: String) throws {
        let path = directory + "/" + name
        if record {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        let want = try #require(try? String(contentsOfFile: path, encoding: .utf8), "no golden file \(name): run KILN_RECORD=1 swift test --filter GoldenTests")
        guard text != want else { return }
        let got = text.components(separatedBy: "\n"), expected = want.components(separatedBy: "\n")
        let line = (0..<min(got.count, expected.count)).first { got[$0] != expected[$0] } ?? min(got.count, expected.count)
        Issue.record("""
            \(name) changed at line \(line + 1):
              golden: \(line < expected.count ? expected[line] : "(end of file)")
              now:    \(line < got.count ? got[line] : "(end of file)")
            if the change is meant, re-record with KILN_RECORD=1 swift test --filter GoldenTests and commit the diff
            """)
    }

    /// Each function as its transform makes it (`kiln ir --stage frontend --function F`) and after the passes
    /// (`kiln ir --function F`); each parses back, and the passes applied to the parsed first stage give the
    /// second.
    @Test(arguments: ["forward", "train_step", "loss", "prefill", "decode_step", "attention_maps"])
    func irAtEachStage(function: String) throws {
        let (file, pipeline) = try Self.tiny()
        let (g, train) = try pipeline.frontendWithTrain(file)
        let made = IRPrinter.print(try pipeline.unoptimized(function, of: g, train: train))
        let optimized = IRPrinter.print(try pipeline.function(function, of: g, train: train))
        try Self.check("\(function).0-made.ir", made)
        try Self.check("\(function).1-optimized.ir", optimized)
        let reparsed = try parseIR(made)
        let again = try pipeline.optimize(reparsed, training: function == "train_step").removingUnusedInputs()
        #expect(IRPrinter.print(again) == optimized, "the passes on the parsed IR of \(function) give other IR")
    }

    /// model.c, model.h and tiny.h as `kiln build` writes them.
    @Test func generatedC() throws {
        let (file, pipeline) = try Self.tiny()
        let compiled = try pipeline.generate(file)
        #expect(compiled.functions.map(\.function) == ["forward", "train_step", "loss", "prefill", "decode_step", "attention_maps"])
        try Self.check("model.c", compiled.generated.source)
        try Self.check("model.h", compiled.generated.programHeader)
        try Self.check("\(compiled.generated.prefix).h", compiled.generated.apiHeader)
    }
}
