import KilnIR

/// IR printing for the CLI (keeps the CLI's imports to the driver).
public enum IRText {
    public static func print(_ g: Graph) -> String { IRPrinter.print(g) }
}
