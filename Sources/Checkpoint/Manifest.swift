// Manifest: the `manifest.json` inside every checkpoint directory.
//
// It names the format (magic + version), says what model it holds and how far training got,
// records where each input stream was, and lists every other file with its size and sha256 so
// `CheckpointStore.verify` can prove the directory is intact. JSON keys are snake_case, output
// is pretty-printed with sorted keys so manifests diff cleanly.

import Foundation

// MARK: - JSONValue

/// Any JSON value; used for the free-form model config and for parsing safetensors headers.
/// Integral numbers within ±2^53 are written without a fractional part.
public enum JSONValue: Sendable, Equatable, Codable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let d = try? container.decode(Double.self) {
            self = .number(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSONValue].self) {
            self = .array(a)
        } else if let o = try? container.decode([String: JSONValue].self) {
            self = .object(o)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a JSON value")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .number(let d):
            if let i = exactInt { try container.encode(i) } else { try container.encode(d) }
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }

    /// The number as an Int if it is integral and exactly representable.
    public var exactInt: Int? {
        guard case .number(let d) = self, d == d.rounded(), abs(d) <= 9_007_199_254_740_992 else { return nil }
        return Int(d)
    }

    public var doubleValue: Double? {
        if case .number(let d) = self { d } else { nil }
    }

    public var stringValue: String? {
        if case .string(let s) = self { s } else { nil }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { b } else { nil }
    }

    /// Member of an object, nil otherwise.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { o[key] } else { nil }
    }

    public var description: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "<unencodable>" }
        return String(decoding: data, as: UTF8.self)
    }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

// MARK: - Manifest

/// Size and sha256 of one file in a checkpoint directory.
public struct FileDigest: Codable, Sendable, Equatable {
    /// Lower-case hex.
    public var sha256: String
    public var bytes: Int

    public init(sha256: String, bytes: Int) {
        self.sha256 = sha256
        self.bytes = bytes
    }
}

/// Contents of `manifest.json`. `CheckpointStore.write` fills `files` (and `step`); callers fill
/// the rest.
public struct CheckpointManifest: Codable, Sendable, Equatable {
    /// Value of `format` in every StreamRec checkpoint.
    public static let formatMagic = "streamrec-checkpoint"
    /// Version this build writes and reads. Bump when the layout changes incompatibly.
    public static let currentFormatVersion = 1
    /// Name of the manifest inside a checkpoint directory.
    public static let fileName = "manifest.json"

    public var format: String
    public var formatVersion: Int
    /// Which model the tensors belong to, e.g. "widedeep".
    public var modelKind: String
    /// The model's configuration, enough to rebuild it before loading tensors.
    public var modelConfig: JSONValue
    public var step: Int
    public var samplesTrained: Int
    public var wallTimeSeconds: Double
    /// ISO 8601, UTC.
    public var createdAt: String
    public var metrics: [String: Double]
    /// Where each input stream had been consumed up to, e.g. "criteo/3" → "120045".
    public var streamPositions: [String: String]
    /// File inside the checkpoint holding the feature-dictionary snapshot, e.g. "features.stats".
    public var dictionary: String?
    /// Every file in the checkpoint except the manifest itself.
    public var files: [String: FileDigest]
    /// When the newest batch trained into this version was produced: its oldest event's time (ms
    /// since the epoch). Serve observes event → served freshness from it. Absent in versions
    /// written before it existed, or when no trained batch carried a time.
    public var newestEventProducedMs: Int64? = nil

    public init(
        modelKind: String,
        modelConfig: JSONValue = .object([:]),
        step: Int,
        samplesTrained: Int,
        wallTimeSeconds: Double,
        createdAt: String = CheckpointManifest.now(),
        metrics: [String: Double] = [:],
        streamPositions: [String: String] = [:],
        dictionary: String? = nil,
        files: [String: FileDigest] = [:]
    ) {
        format = Self.formatMagic
        formatVersion = Self.currentFormatVersion
        self.modelKind = modelKind
        self.modelConfig = modelConfig
        self.step = step
        self.samplesTrained = samplesTrained
        self.wallTimeSeconds = wallTimeSeconds
        self.createdAt = createdAt
        self.metrics = metrics
        self.streamPositions = streamPositions
        self.dictionary = dictionary
        self.files = files
    }

    enum CodingKeys: String, CodingKey {
        case format
        case formatVersion = "format_version"
        case modelKind = "model_kind"
        case modelConfig = "model_config"
        case step
        case samplesTrained = "samples_trained"
        case wallTimeSeconds = "wall_time_seconds"
        case createdAt = "created_at"
        case metrics
        case streamPositions = "stream_positions"
        case dictionary
        case files
        case newestEventProducedMs = "newest_event_produced_ms"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format)
        try c.encode(formatVersion, forKey: .formatVersion)
        try c.encode(modelKind, forKey: .modelKind)
        try c.encode(modelConfig, forKey: .modelConfig)
        try c.encode(step, forKey: .step)
        try c.encode(samplesTrained, forKey: .samplesTrained)
        try c.encode(wallTimeSeconds, forKey: .wallTimeSeconds)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(metrics, forKey: .metrics)
        try c.encode(streamPositions, forKey: .streamPositions)
        try c.encode(dictionary, forKey: .dictionary) // explicit null: "no dictionary"
        try c.encode(files, forKey: .files)
        try c.encodeIfPresent(newestEventProducedMs, forKey: .newestEventProducedMs)
    }

    /// Current time as ISO 8601 UTC, e.g. "2025-01-31T12:00:00Z".
    public static func now() -> String {
        ISO8601DateFormatter().string(from: Date())
    }

    /// Pretty-printed, sorted-key JSON.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(self)
        data.append(UInt8(ascii: "\n"))
        return data
    }

    /// Parses manifest JSON, checking the magic and version before the rest so an old or
    /// foreign file gets an error that says what it is and what to do.
    public static func decode(_ data: Data, path: String = "manifest.json") throws -> CheckpointManifest {
        struct Probe: Decodable {
            var format: String?
            var formatVersion: Int?
            enum CodingKeys: String, CodingKey {
                case format
                case formatVersion = "format_version"
            }
        }
        let probe: Probe
        do {
            probe = try JSONDecoder().decode(Probe.self, from: data)
        } catch {
            throw CheckpointError.invalidManifest(path: path, reason: "not valid JSON: \(error)")
        }
        guard probe.format == formatMagic else {
            throw CheckpointError.invalidManifest(
                path: path,
                reason: "\"format\" is \(probe.format.map { "\"\($0)\"" } ?? "missing"), "
                    + "expected \"\(formatMagic)\"; this is not a StreamRec checkpoint manifest")
        }
        guard let version = probe.formatVersion else {
            throw CheckpointError.invalidManifest(path: path, reason: "\"format_version\" is missing")
        }
        guard version == currentFormatVersion else {
            throw CheckpointError.unsupportedVersion(path: path, found: version, supported: currentFormatVersion)
        }
        do {
            return try JSONDecoder().decode(CheckpointManifest.self, from: data)
        } catch {
            throw CheckpointError.invalidManifest(path: path, reason: describeDecodingError(error))
        }
    }
}

/// "missing key 'step'" rather than the whole DecodingError dump.
func describeDecodingError(_ error: Error) -> String {
    guard let error = error as? DecodingError else { return String(describing: error) }
    func at(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map(\.stringValue).joined(separator: ".")
        return path.isEmpty ? "" : " at '\(path)'"
    }
    switch error {
    case .keyNotFound(let key, let context): return "missing key '\(key.stringValue)'\(at(context))"
    case .typeMismatch(let type, let context): return "expected \(type)\(at(context)): \(context.debugDescription)"
    case .valueNotFound(let type, let context): return "null where \(type) is required\(at(context))"
    case .dataCorrupted(let context): return "corrupted data\(at(context)): \(context.debugDescription)"
    @unknown default: return String(describing: error)
    }
}
