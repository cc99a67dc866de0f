import Foundation
import PackagePlugin

/// Registers the IR's ops: finds the op definitions in `Sources/KilnIR/Ops/` (types declared
/// `public struct NAME: Op` and families declared `public enum NAME: OpFamily`) and generates
/// `OpRegistry.discovered`, so that adding an op needs no list to be edited.
@main
struct OpRegistryPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        guard let module = target as? SourceModuleTarget else { return [] }
        let files = module.sourceFiles(withSuffix: "swift").map(\.url).filter { $0.deletingLastPathComponent().lastPathComponent == "Ops" }
            .sorted { $0.path < $1.path }
        let output = context.pluginWorkDirectoryURL.appending(path: "OpRegistry.generated.swift")
        return [
            .buildCommand(
                displayName: "Registering the ops of \(target.name) (\(files.count) files)",
                executable: try context.tool(named: "KilnBuildTool").url,
                arguments: ["op-registry", output.path] + files.map(\.path),
                inputFiles: files,
                outputFiles: [output])
        ]
    }
}
