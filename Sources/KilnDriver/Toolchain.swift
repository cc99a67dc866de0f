import Foundation

/// Finds a C compiler that builds and runs OpenMP code.
///
/// The Swift toolchain's bundled `clang` has no `omp.h`, and which `clang`
/// comes first on PATH depends on the machine, so each candidate is probed by
/// compiling and running a three-line OpenMP program: `$CC` first, then gcc
/// (with libgomp), then clang (with libomp), then `cc`. gcc comes before clang
/// because its code is the faster one on every x86 server measured: gcc 12's
/// GEMM tile reaches ~120 GFLOP/s per core on an AMD EPYC where clang 14's
/// reaches ~80, and the char model's training step took 20 ms against 28 ms
/// there (docs/benchmarks.md); on an Intel Xeon gcc was about 12% faster.
public enum Toolchain {
    public struct Compiler: Sendable { public var path: String; public var openmp: Bool }

    static let probeSource = """
    #include <omp.h>
    #include <stdio.h>
    int main(void) { int n = 0;
    #pragma omp parallel reduction(+:n)
      n += 1;
      printf("%d\\n", n > 0 && omp_get_max_threads() > 0); return 0; }
    """

    /// Runs a program, returning its exit status and output.
    @discardableResult
    public static func run(_ exe: String, _ args: [String], cwd: String? = nil, env: [String: String]? = nil, quiet: Bool = true) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [exe] + args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        if let env { p.environment = env }
        let pipe = Pipe()
        if quiet { p.standardOutput = pipe; p.standardError = pipe }
        do { try p.run() } catch { return (127, "\(error)") }
        let data = quiet ? pipe.fileHandleForReading.readDataToEndOfFile() : Data()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    public static func candidates() -> [String] {
        var list: [String] = []
        if let cc = ProcessInfo.processInfo.environment["CC"], !cc.isEmpty { list.append(cc) }
        list += ["gcc", "clang", "/usr/bin/clang", "cc"]
        return list
    }

    /// The MPI compiler wrapper for `train-mpi`: `$MPICC` if set, else `mpicc` when it runs; nil without MPI.
    public static func mpiWrapper() -> String? {
        let env = ProcessInfo.processInfo.environment
        let wrapper = env["MPICC"].flatMap { $0.isEmpty ? nil : $0 } ?? "mpicc"
        return run(wrapper, ["--version"]).0 == 0 ? wrapper : nil
    }

    /// The first candidate that compiles and runs the OpenMP probe; else the
    /// first that compiles plain C (without OpenMP); nil when none works.
    public static func find() -> Compiler? {
        let dir = NSTemporaryDirectory() + "kiln-probe-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let src = dir + "/probe.c"
        try? probeSource.write(toFile: src, atomically: true, encoding: .utf8)
        var plain: String?
        for cc in candidates() {
            let exe = dir + "/probe"
            if run(cc, ["-fopenmp", "-o", exe, src]).0 == 0, run(exe, []).1.hasPrefix("1") {
                return Compiler(path: cc, openmp: true)
            }
            if plain == nil, run(cc, ["--version"]).0 == 0 { plain = cc }
        }
        return plain.map { Compiler(path: $0, openmp: false) }
    }
}
