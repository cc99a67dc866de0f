import Foundation

/// A sweep: several model variants trained on the same data with the same budget and seeds, then compared
/// (`kiln sweep SPEC`, docs/experiments.md). The spec is a text file of `key = value` lines and `variant`
/// lines; `#` starts a comment; paths are relative to the spec's folder:
///
///     data     = ../examples/data/tinyshakespeare.txt   # a byte-level text file (the train binary's data)
///     steps    = 500                # the budget: optimizer steps, the same for every variant
///     seconds  = 300                # or (also) a time budget: seconds of training steps per run; with
///                                   #   both, a run stops at whichever comes first
///     seeds    = 1 2                # one run per variant and seed
///     eval_interval = 100           # evaluations (validation loss) every N steps, and at the end
///     early    = 100                # the step whose training loss the table reports as the early loss
///     lengths  = 32 64 128 256      # also score the held-out text at these sequence lengths
///     train    = --lr 2e-3 --batch 8   # flags for every run's train binary
///     variant learned = models/learned.kiln
///     variant rotary  = models/rotary.kiln --set layers=2
///     variant alibi   = models/learned.kiln --replace " + positions(learned, T, dim)" "" --replace "mask: causal)" "mask: causal, position: alibi)"
public struct SweepSpec: Sendable, Equatable {
    public struct Variant: Sendable, Equatable {
        public var name: String
        /// The model file, absolute.
        public var file: String
        /// `--set` overrides (name, value).
        public var overrides: [(String, String)]
        /// `--replace OLD NEW` edits of the model file's text, in order (each OLD must occur).
        public var replacements: [(String, String)] = []
        public static func == (a: Variant, b: Variant) -> Bool {
            a.name == b.name && a.file == b.file && a.overrides.map { "\($0.0)=\($0.1)" } == b.overrides.map { "\($0.0)=\($0.1)" }
                && a.replacements.map { "\($0.0)\u{0}\($0.1)" } == b.replacements.map { "\($0.0)\u{0}\($0.1)" }
        }
        /// The model's source: the file's text with the replacements made.
        public func source() throws -> String {
            guard let data = FileManager.default.contents(atPath: file), var text = String(data: data, encoding: .utf8) else {
                throw Failure(description: "variant '\(name)': cannot read \(file)")
            }
            for (old, new) in replacements {
                guard text.contains(old) else { throw Failure(description: "variant '\(name)': --replace \"\(old)\": no such text in \(file)") }
                text = text.replacingOccurrences(of: old, with: new)
            }
            return text
        }
    }
    public enum Budget: Sendable, Equatable {
        /// Optimizer steps, the same for every variant.
        case steps(Int)
        /// Seconds of training steps per run (the train binary's `--time-limit`: evaluations not counted), with
        /// an optional bound on the steps.
        case seconds(Int, maxSteps: Int?)
    }

    /// The steps a run trains at most: the budget's steps, else a bound no run reaches.
    public var maxSteps: Int {
        switch budget {
        case .steps(let n): n
        case .seconds(_, let m): m ?? 1 << 30
        }
    }

    /// The time budget in seconds, if there is one.
    public var seconds: Int? { if case .seconds(let s, _) = budget { s } else { nil } }

    /// The step whose training loss the table reports: `early`, else a tenth of the steps (time budget: the
    /// evaluation interval, else 100).
    public var earlyStep: Int {
        if let e = early { return e }
        if case .steps(let n) = budget { return max(n / 10, 1) }
        return evalInterval ?? 100
    }

    /// "120 steps" / "60 s of training steps" / "60 s of training steps (at most 500 steps)".
    public var budgetText: String {
        switch budget {
        case .steps(let n): "\(n) steps"
        case .seconds(let t, let m): "\(t) s of training steps" + (m.map { " (at most \($0) steps)" } ?? "")
        }
    }

    public var path: String
    public var data: String
    public var budget: Budget
    public var seeds: [Int]
    public var evalInterval: Int?
    public var early: Int?
    public var lengths: [Int]
    public var trainFlags: [String]
    public var variants: [Variant]

    /// A spec error: one line `SPEC:LINE: message`.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func load(_ path: String) throws -> SweepSpec {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure(description: "\(path): cannot read the sweep spec") }
        guard let text = String(data: data, encoding: .utf8) else { throw Failure(description: "\(path): the sweep spec is not UTF-8 text") }
        return try parse(text, path: path)
    }

    /// A value's words: separated by spaces, a double-quoted word may hold spaces (and \" \\ and \n, a new
    /// line); nil for an unterminated quote.
    static func words(_ value: String) -> [String]? {
        var out: [String] = [], word = "", quoted = false, inWord = false, escape = false
        for ch in value {
            if quoted {
                if escape { word.append(ch == "n" ? "\n" : ch); escape = false } else if ch == "\\" { escape = true } else if ch == "\"" { quoted = false } else { word.append(ch) }
            } else if ch == "\"" {
                quoted = true; inWord = true
            } else if ch == " " || ch == "\t" {
                if inWord { out.append(word); word = ""; inWord = false }
            } else {
                word.append(ch); inWord = true
            }
        }
        if quoted { return nil }
        if inWord { out.append(word) }
        return out
    }

    public static func parse(_ text: String, path: String) throws -> SweepSpec {
        let folder = (path as NSString).deletingLastPathComponent
        func resolve(_ p: String) -> String { p.hasPrefix("/") ? p : ((folder.isEmpty ? "." : folder) as NSString).appendingPathComponent(p) }
        var spec = SweepSpec(path: path, data: "", budget: .steps(0), seeds: [1], evalInterval: nil, early: nil, lengths: [],
                             trainFlags: [], variants: [])
        var seen: Set<String> = [], budgetLine = 0, dataLine = 0, stepsGiven: Int?, secondsGiven: Int?
        for (k, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = k + 1
            func fail(_ m: String) -> Failure { Failure(description: "\(path):\(line): \(m)") }
            let body = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let trimmed = body.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let eq = trimmed.firstIndex(of: "=") else { throw fail("expected 'key = value' or 'variant NAME = FILE', got '\(trimmed)'") }
            let key = trimmed[..<eq].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard let words = Self.words(value) else { throw fail("an unterminated \" in '\(value)'") }
            func ints(_ what: String, min: Int) throws -> [Int] {
                let v = words.map { Int($0) }
                guard !v.isEmpty, v.allSatisfy({ $0 != nil && $0! >= min && $0! <= 1 << 30 }) else {
                    throw fail("\(what) must be \(words.count > 1 ? "integers" : "an integer") of at least \(min), got '\(value)'")
                }
                return v.map { $0! }
            }
            if key.hasPrefix("variant ") || key == "variant" {
                let name = key.dropFirst("variant".count).trimmingCharacters(in: .whitespaces)
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }), name.first != "." else {
                    throw fail("a variant needs a name of letters, digits, '-', '_' or '.': 'variant NAME = FILE [--set k=v]'")
                }
                guard !spec.variants.contains(where: { $0.name == name }) else { throw fail("variant '\(name)' is named twice") }
                guard let file = words.first else { throw fail("variant '\(name)' names no model file") }
                var overrides: [(String, String)] = [], replacements: [(String, String)] = []
                var i = 1
                while i < words.count {
                    if words[i] == "--replace", i + 2 < words.count, !words[i + 1].isEmpty {
                        replacements.append((words[i + 1], words[i + 2]))
                        i += 3
                        continue
                    }
                    guard words[i] == "--set", i + 1 < words.count, let e = words[i + 1].firstIndex(of: "="), e != words[i + 1].startIndex else {
                        throw fail("after the model file a variant takes '--set name=value' and '--replace \"OLD\" \"NEW\"', got '\(words[i...].joined(separator: " "))'")
                    }
                    overrides.append((String(words[i + 1][..<e]), String(words[i + 1][words[i + 1].index(after: e)...])))
                    i += 2
                }
                let abs = resolve(file)
                guard FileManager.default.fileExists(atPath: abs) else { throw fail("variant '\(name)': no model file \(abs)") }
                let variant = Variant(name: name, file: abs, overrides: overrides, replacements: replacements)
                do { _ = try variant.source() } catch let e as Failure { throw fail(e.description) }
                spec.variants.append(variant)
                continue
            }
            guard seen.insert(key).inserted else { throw fail("'\(key)' is given twice") }
            switch key {
            case "data":
                guard !value.isEmpty else { throw fail("data names no file") }
                spec.data = resolve(value); dataLine = line
                var dir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: spec.data, isDirectory: &dir), !dir.boolValue else { throw fail("no data file \(spec.data)") }
            case "steps":
                guard words.count == 1, let n = Int(value), n >= 1, n <= 1 << 30 else { throw fail("the budget steps must be a positive integer, got '\(value)'") }
                stepsGiven = n; budgetLine = line
            case "seconds":
                guard words.count == 1, let n = Int(value), n >= 1, n <= 1 << 30 else { throw fail("the budget seconds must be a positive integer, got '\(value)'") }
                secondsGiven = n; budgetLine = line
            case "seeds":
                spec.seeds = try ints("seeds", min: 0)
                guard Set(spec.seeds).count == spec.seeds.count else { throw fail("seeds repeat: '\(value)'") }
            case "eval_interval", "early":
                guard words.count == 1 else { throw fail("\(key) takes one integer, got '\(value)'") }
                let n = try ints(key, min: 1)[0]
                if key == "early" { spec.early = n } else { spec.evalInterval = n }
            case "lengths": spec.lengths = try ints("lengths", min: 1)
            case "train":
                spec.trainFlags = words
                for reserved in ["--data", "--out", "--resume", "--seed", "--log", "--steps"] where words.contains(reserved) {
                    throw fail("train flags may not set \(reserved): the sweep sets it for every run")
                }
            default:
                throw fail("unknown key '\(key)' (known: data, steps, seconds, seeds, eval_interval, early, lengths, train, variant NAME)")
            }
        }
        func fail(_ m: String) -> Failure { Failure(description: "\(path): \(m)") }
        if dataLine == 0 { throw fail("no 'data = FILE'") }
        if budgetLine == 0 { throw fail("no budget: 'steps = N' or 'seconds = S'") }
        spec.budget = secondsGiven.map { .seconds($0, maxSteps: stepsGiven) } ?? .steps(stepsGiven ?? 0)
        if spec.variants.isEmpty { throw fail("no variants: 'variant NAME = FILE'") }
        if let n = stepsGiven, let e = spec.early, e > n { throw fail("early step \(e) is past the budget of \(n) steps") }
        return spec
    }
}
