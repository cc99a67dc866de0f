import KilnBasics
import KilnIR

/// IR printing for the CLI (keeps the CLI's imports to the driver).
public enum IRText {
    public static func print(_ g: Graph) -> String { IRPrinter.print(g) }
}

/// Element-type names for the CLI (keeps KilnBasics out of the CLI's imports).
public enum DTypeName {
    public static func parse(_ s: String) -> DType { s == "f64" ? .f64 : .f32 }
}
