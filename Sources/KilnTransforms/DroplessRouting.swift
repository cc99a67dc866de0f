import KilnBasics
import KilnIR

/// Routes every token at inference: `moe_route {capacity: f}` → `{capacity: 0}`. Expert capacity bounds the
/// work of a training batch (Switch, GShard), and it makes a token's output depend on the other tokens of its
/// call (who came first to a full expert). Inference functions (`forward`, `prefill`, `decode_step`) drop no
/// token, as Mixtral and inference engines run: each position's result is its own, the same in any batch and
/// position by position (so the KV cache decodes to the forward pass). `train_step` and `loss` keep it.
public struct DroplessRouting: Pass {
    public let name = "dropless-routing"
    public init() {}

    public func run(_ g: inout Graph) throws -> Bool {
        var changed = false
        for i in g.nodes.indices where g.nodes[i].kind == .moeRoute && g.nodes[i].attrs[MixtureOfExperts.capacity] != 0 {
            g.nodes[i].attrs.set(MixtureOfExperts.capacity, 0)
            changed = true
        }
        return changed
    }
}
