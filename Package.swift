// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Kiln",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "kiln", targets: ["kiln"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        /// Source locations, diagnostics, dtypes, symbolic dimensions and shapes.
        .target(name: "KilnBasics"),
        /// The typed tensor IR: graph, the ops' definitions (one file each in Ops/: type rule, derivative, FLOPs),
        /// verifier, printer and parser.
        .target(name: "KilnIR", dependencies: ["KilnBasics"], plugins: ["OpRegistry"]),
        /// The `.kiln` model language: lexer, parser, AST, semantic checks and IR generation.
        .target(name: "KilnFrontend", dependencies: ["KilnBasics", "KilnIR"]),
        /// The pass manager and the graph-to-graph passes, one per file.
        .target(name: "KilnTransforms", dependencies: ["KilnBasics", "KilnIR"]),
        /// Reverse-mode automatic differentiation as an IR-to-IR transformation (one VJP rule per op).
        .target(name: "KilnAutodiff", dependencies: ["KilnBasics", "KilnIR"]),
        /// Lowering of the IR to OpenMP C: memory plan, kernels, model descriptor.
        .target(name: "KilnCodegenC", dependencies: ["KilnBasics", "KilnIR"]),
        /// The compilation pipeline and the system C toolchain; the C runtime (runtime/) is embedded into it when kiln is built.
        .target(name: "KilnDriver", dependencies: ["KilnBasics", "KilnIR", "KilnFrontend", "KilnTransforms", "KilnAutodiff", "KilnCodegenC"],
                plugins: ["EmbedRuntime"]),
        /// The code generator the build plugins run (embeds runtime/ into KilnDriver; registers KilnIR's ops).
        .executableTarget(name: "KilnBuildTool"),
        /// Build plugin: runtime/**/*.c and *.h into KilnDriver's `RuntimeSources`, so there is no committed copy.
        .plugin(name: "EmbedRuntime", capability: .buildTool(), dependencies: ["KilnBuildTool"]),
        /// Build plugin: the op definitions of Sources/KilnIR/Ops/ into `OpRegistry`, so an op needs no list entry.
        .plugin(name: "OpRegistry", capability: .buildTool(), dependencies: ["KilnBuildTool"]),
        /// The `kiln` command-line tool (the only target that imports ArgumentParser).
        .executableTarget(name: "kiln", dependencies: [
            "KilnDriver",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "KilnTests", dependencies: ["KilnBasics", "KilnIR", "KilnFrontend", "KilnTransforms", "KilnAutodiff", "KilnCodegenC", "KilnDriver"],
                    exclude: ["Golden"]),
    ]
)
