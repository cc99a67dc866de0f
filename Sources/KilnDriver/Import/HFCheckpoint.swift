import Foundation

/// A Hugging Face model folder as `kiln import` reads it: `config.json` and the names and shapes of
/// `model.safetensors` (its header only; the weights stay where they are and load at run time through the
/// model file's `weights` section).
public struct HFCheckpoint {
    public let dir: String
    public let config: [String: Any]
    /// Every tensor of model.safetensors: name → shape.
    public let tensors: [String: [Int]]

    public init(dir: String) throws {
        self.dir = dir
        let configPath = dir + "/config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw DriverError.message("\(configPath): no such file (kiln import reads a Hugging Face model folder: config.json and model.safetensors)")
        }
        guard data.count < 1 << 22, let object = try? JSONSerialization.jsonObject(with: data), let config = object as? [String: Any] else {
            throw DriverError.message("\(configPath): not a JSON object")
        }
        self.config = config
        let weightsPath = dir + "/model.safetensors"
        if !FileManager.default.fileExists(atPath: weightsPath) {
            if FileManager.default.fileExists(atPath: dir + "/model.safetensors.index.json") {
                throw DriverError.message("\(dir): the weights are sharded (model.safetensors.index.json); kiln import reads one model.safetensors")
            }
            let other = ["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"].first { FileManager.default.fileExists(atPath: dir + "/" + $0) }
            throw DriverError.message("\(weightsPath): no such file\(other.map { " (the folder has \($0); convert it to safetensors)" } ?? "")")
        }
        tensors = try Self.header(weightsPath)
    }

    /// The tensor names and shapes of a safetensors file, from its header.
    static func header(_ path: String) throws -> [String: [Int]] {
        guard let h = FileHandle(forReadingAtPath: path) else { throw DriverError.message("cannot read '\(path)'") }
        defer { try? h.close() }
        let lengthBytes = (try? h.read(upToCount: 8)) ?? Data()
        guard lengthBytes.count == 8 else { throw DriverError.message("\(path): not a safetensors file (shorter than its header length)") }
        let n = lengthBytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.1) << (8 * UInt64($1.0)) }
        guard n >= 2, n <= 100_000_000 else { throw DriverError.message("\(path): not a safetensors file (header length \(n))") }
        let body = (try? h.read(upToCount: Int(n))) ?? Data()
        guard body.count == Int(n), let object = try? JSONSerialization.jsonObject(with: body), let header = object as? [String: Any] else {
            throw DriverError.message("\(path): its header is not valid JSON")
        }
        var tensors: [String: [Int]] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let entry = value as? [String: Any], let shape = entry["shape"] as? [Int] else {
                throw DriverError.message("\(path): tensor '\(name.prefix(80))' has no shape")
            }
            tensors[name] = shape
        }
        return tensors
    }

    // MARK: config values, refused in one line when missing or of the wrong kind

    var architecture: String { (config["architectures"] as? [String])?.first ?? (config["model_type"] as? String ?? "?") }

    func has(_ key: String) -> Bool { config[key] != nil && !(config[key] is NSNull) }

    /// Whether a JSON value is true or false (JSONSerialization gives booleans as NSNumbers that also cast to Int).
    static func isBool(_ v: Any?) -> Bool {
        guard let n = v as? NSNumber else { return false }
        return String(cString: n.objCType) == "c"
    }

    /// A config value as JSON writes it: "swish", true, 4.0, {"rope_type":"yarn"}.
    static func json(_ v: Any) -> String {
        if isBool(v), let b = v as? Bool { return b ? "true" : "false" }
        if let s = v as? String { return "\"\(s)\"" }
        if v is NSNull { return "null" }
        if JSONSerialization.isValidJSONObject(v),
           let data = try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys, .withoutEscapingSlashes]),
           let text = String(data: data, encoding: .utf8) { return text }
        return "\(v)"
    }

    func int(_ key: String, default d: Int? = nil) throws -> Int {
        if let n = config[key] as? NSNumber, !Self.isBool(n), let v = Int(exactly: n.doubleValue) { return v }
        if let d, !has(key) { return d }
        throw DriverError.message("\(dir)/config.json: '\(key)' must be an integer\(has(key) ? ", got \(Self.json(config[key]!))" : " and is missing")")
    }

    func double(_ key: String, default d: Double? = nil) throws -> Double {
        if let n = config[key] as? NSNumber, !Self.isBool(n) { return n.doubleValue }
        if let d, !has(key) { return d }
        throw DriverError.message("\(dir)/config.json: '\(key)' must be a number\(has(key) ? ", got \(Self.json(config[key]!))" : " and is missing")")
    }

    func bool(_ key: String, default d: Bool) throws -> Bool {
        guard has(key) else { return d }
        if Self.isBool(config[key]), let v = config[key] as? Bool { return v }
        throw DriverError.message("\(dir)/config.json: '\(key)' must be true or false, got \(Self.json(config[key]!))")
    }

    func string(_ key: String, default d: String) throws -> String {
        guard has(key) else { return d }
        if let v = config[key] as? String { return v }
        throw DriverError.message("\(dir)/config.json: '\(key)' must be a string, got \(Self.json(config[key]!))")
    }

    /// Refuses a configuration Kiln cannot express, naming the key.
    func refuse(_ key: String, _ why: String) -> DriverError {
        let value = config[key].map(Self.json) ?? "(missing)"
        return DriverError.message("\(dir)/config.json: \(key) = \(value) is not supported: \(why)")
    }

    /// The prefix the checkpoint puts before the base model's names: "transformer." for GPT2LMHeadModel,
    /// "" for GPT2Model; the first candidate under which `probe` exists.
    func prefix(for probe: String, candidates: [String]) throws -> String {
        guard let p = candidates.first(where: { tensors[$0 + probe] != nil }) else {
            throw DriverError.message("\(dir)/model.safetensors: no tensor '\(candidates.map { $0 + probe }.joined(separator: "' or '"))'; is it a \(architecture) checkpoint?")
        }
        return p
    }
}

/// `kiln import`: a Hugging Face model folder to a model file whose weights section reads the folder's
/// model.safetensors under its own names.
public enum HFImport {
    /// The layouts, by config.json's `model_type`.
    public static let layouts: [String: @Sendable (HFCheckpoint, String) throws -> String] = [
        "gpt2": GPT2Layout.modelFile,
        "llama": LlamaLayout.modelFile,
        "bert": BertLayout.modelFile,
        "marian": MarianLayout.modelFile,
    ]

    /// The model file for the folder; `name` is the model's name in it.
    public static func modelFile(dir: String, name: String?) throws -> String {
        let ck = try HFCheckpoint(dir: dir)
        let type = try ck.string("model_type", default: "")
        guard let layout = layouts[type] else {
            throw ck.refuse("model_type", "kiln import knows \(layouts.keys.sorted().joined(separator: ", "))")
        }
        return try layout(ck, name ?? defaultName(dir))
    }

    /// "all-MiniLM-L6-v2" → "AllMiniLML6V2": the folder's name as a model name.
    static func defaultName(_ dir: String) -> String {
        let base = URL(fileURLWithPath: dir).standardizedFileURL.lastPathComponent
        let words = base.split { !$0.isLetter && !$0.isNumber }.map { $0.prefix(1).uppercased() + $0.dropFirst() }
        let joined = words.joined().filter { $0.isASCII }
        guard let first = joined.first, first.isLetter else { return "Imported" + joined }
        return joined
    }

    /// The header every imported model file starts with.
    /// The model file's opening: where it comes from, how to run it (and notes, each a comment line), the
    /// model's name and its config section, the values aligned.
    static func header(_ ck: HFCheckpoint, name: String, summary: String, usage: String, notes: [String] = [],
                       config: [(String, String)]) -> String {
        let width = config.map(\.0.count).max() ?? 0
        let values = config.map { "  \($0.0.padding(toLength: width, withPad: " ", startingAt: 0)) = \($0.1)" }
        return """
        # Imported by `kiln import` from \(ck.dir) (\(ck.architecture)): \(summary)
        # The weights load as they are from that folder's model.safetensors, through the weights section at the end:
        #   kiln build THIS.kiln -o out && \(usage)
        \(notes.map { "# " + $0 + "\n" }.joined())model \(name)

        config {
        \(values.joined(separator: "\n"))
        }

        """
    }

    /// Whether `name` matches an ignore pattern, in which `*` matches any run of characters (as the runtime's
    /// kiln_glob_match).
    static func glob(_ pattern: String, _ name: String) -> Bool {
        let p = Array(pattern.utf8), s = Array(name.utf8)
        var i = 0, j = 0, star = -1, resume = 0
        while j < s.count {
            if i < p.count && p[i] == UInt8(ascii: "*") { star = i; i += 1; resume = j }
            else if i < p.count && p[i] == s[j] { i += 1; j += 1 }
            else if star >= 0 { i = star + 1; resume += 1; j = resume }
            else { return false }
        }
        while i < p.count && p[i] == UInt8(ascii: "*") { i += 1 }
        return i == p.count
    }

    /// A `weights { … }` section from (parameter pattern, source) lines and ignore patterns.
    static func weightsSection(_ lines: [(String, String)], ignore: [String]) -> String {
        let width = lines.map(\.0.count).max() ?? 0
        var out = "weights {\n"
        for (p, s) in lines { out += "  \"\(p)\"" + String(repeating: " ", count: width - p.count) + " = \(s)\n" }
        if !ignore.isEmpty { out += "  ignore " + ignore.map { "\"\($0)\"" }.joined(separator: ", ") + "\n" }
        return out + "}\n"
    }
}
