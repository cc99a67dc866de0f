import Foundation
import PackagePlugin

/// Embeds the C runtime (`runtime/**/*.c`, `*.h`) into the target as `RuntimeSources.files`, when `kiln` is
/// built: the `.c` and `.h` files are the only copy in the repository, and `kiln build` writes them into every
/// build directory from the binary, without finding the repository.
@main
struct EmbedRuntime: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let root = context.package.directoryURL.appending(path: "runtime")
        let files = (FileManager.default.subpaths(atPath: root.path) ?? [])
            .filter { $0.hasSuffix(".c") || $0.hasSuffix(".h") }
            .sorted()
        let output = context.pluginWorkDirectoryURL.appending(path: "RuntimeSources.swift")
        return [
            .buildCommand(
                displayName: "Embedding runtime/ (\(files.count) files) into \(target.name)",
                executable: try context.tool(named: "KilnBuildTool").url,
                arguments: ["embed-runtime", root.path, output.path] + files,
                inputFiles: files.map { root.appending(path: $0) },
                outputFiles: [output])
        ]
    }
}
