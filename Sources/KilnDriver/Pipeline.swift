import Foundation
import KilnBasics
import KilnIR
import KilnFrontend
import KilnTransforms
import KilnCodegenC

/// A failure the CLI reports as one line (`kiln: error: …`) or, for
/// problems in the model file, as rendered diagnostics.
public enum DriverError: Error, CustomStringConvertible {
    case message(String)
    case diagnostics(String, count: Int)

    public var description: String {
        switch self {
        case .message(let m): return m
        case .diagnostics(let d, _): return d
        }
    }
}

/// The stages of compilation, shared by every `kiln` command.
public struct Pipeline {
    public var overrides: [(String, String)] = []
    public init(overrides: [(String, String)] = []) { self.overrides = overrides }

    /// Largest model file accepted (a model description is small).
    public static let maxSourceBytes = 16 << 20

    /// Reads a model file, refusing directories, missing and huge files.
    public static func load(_ path: String) throws -> SourceFile {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw DriverError.message("no such file '\(path)'") }
        guard !isDir.boolValue else { throw DriverError.message("'\(path)' is a directory") }
        guard let h = FileHandle(forReadingAtPath: path) else { throw DriverError.message("cannot read '\(path)'") }
        defer { try? h.close() }
        let data = (try? h.read(upToCount: maxSourceBytes + 1)) ?? Data()
        guard data.count <= maxSourceBytes else { throw DriverError.message("'\(path)' is larger than \(maxSourceBytes >> 20) MiB; a model file should be small") }
        return SourceFile(path: path, bytes: Array(data))
    }

    /// Parses and lowers; throws rendered diagnostics on errors.
    public func frontend(_ file: SourceFile) throws -> Graph {
        let r: Frontend.Result
        do { r = try Frontend.compile(file, options: FrontendOptions(overrides: overrides)) } catch let e as OptionError {
            throw DriverError.message(e.description)
        }
        guard let g = r.graph, !r.diagnostics.hasErrors else {
            throw DriverError.diagnostics(r.diagnostics.render(), count: r.diagnostics.errorCount)
        }
        return g
    }

    /// Runs the optimisation pipeline; `after` sees the graph after each pass.
    public func optimize(_ g: Graph, after: (Int, String, Bool, Graph) -> Void = { _, _, _, _ in }) throws -> Graph {
        var g = g
        try PassManager.standard().run(&g) { i, p, changed, g in after(i, p.name, changed, g) }
        return g
    }

    public static var passNames: [String] { PassManager.standard().passNames }

    /// Everything up to generated C.
    public func generate(_ file: SourceFile) throws -> (Graph, GeneratedModel) {
        let g = try optimize(try frontend(file))
        do {
            return (g, try CEmitter.emit(g, sourceName: (file.path as NSString).lastPathComponent))
        } catch let e as CodegenError {
            throw DriverError.message("\(file.path): \(e.description)")
        }
    }
}
