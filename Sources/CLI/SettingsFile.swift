import Foundation
import Yams

/// A YAML settings file (`--config FILE`), read and parsed once. Any file may hold any section;
/// each command reads the sections it uses and leaves the others alone, so one file can configure
/// every command:
///
/// ```yaml
/// kafka:     {bootstrap, brokers, topics, client, producer, consumer}   # KafkaOptions, broker
/// redis:     {address, prefix, password_file, tls_ca, tls_cert, tls_key} # RedisOptions
/// featurize: {topic, stats, batch_size, …}                              # featurize
/// model: …   train: …   presets: …                                      # train, bench train (ConfigFile)
/// ```
///
/// Every problem is a thrown `CLIError` naming the file, the line and the key and saying what is
/// expected ("config file x.yaml line 3: kafka.bootstrap must be a string (HOST:PORT[,…]), got a
/// mapping"); nothing here traps. An empty file is a file without settings (`--config /dev/null`).
struct SettingsFile {
    /// The file read; nil when there is none (no --config and no default file).
    let path: String?
    /// Top-level sections; nil for no file or an empty one.
    private let root: Node.Mapping?

    /// No settings file: every setting comes from flags, the environment or the built-in default.
    static var none: SettingsFile { SettingsFile(path: nil, root: nil) }

    /// Reads `path`. A file that does not exist, cannot be read, is not YAML or is not a mapping of
    /// sections is an error.
    static func load(_ path: String) throws -> SettingsFile {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CLIError("config file \(path) does not exist; pass an existing YAML file (--config /dev/null for none)")
        }
        guard !isDirectory.boolValue else { throw CLIError("config file \(path) is a directory; pass a YAML file") }
        // FileHandle rather than String(contentsOfFile:): Foundation refuses character devices,
        // and /dev/null is the documented "no settings".
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CLIError("config file \(path) cannot be read: \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        let data: Data
        do { data = try handle.readToEnd() ?? Data() } catch {
            throw CLIError("config file \(path) cannot be read: \(error.localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw CLIError("config file \(path) is not UTF-8 text") }
        return try parse(text, path: path)
    }

    /// `explicit` if given (it must exist), else `defaultPath` if that file exists, else no file.
    /// A default file is optional; one the user names is not.
    static func load(explicit: String?, defaultPath: String?) throws -> SettingsFile {
        if let explicit { return try load(explicit) }
        if let defaultPath, FileManager.default.fileExists(atPath: defaultPath) { return try load(defaultPath) }
        return .none
    }

    /// Parses YAML text (`path` names it in messages).
    static func parse(_ text: String, path: String) throws -> SettingsFile {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw CLIError("config file \(path) is not valid YAML: \(error)")
        }
        guard let node, !node.isNull else { return SettingsFile(path: path, root: nil) }
        guard let mapping = node.mapping else {
            throw CLIError("config file \(path) must be a YAML mapping of sections (kafka:, redis:, …), got \(kindName(node))")
        }
        return SettingsFile(path: path, root: mapping)
    }

    /// A top-level section; an absent one is empty. A section that is not a mapping is an error.
    func section(_ name: String) throws -> SettingsSection {
        let label = path ?? "(none)"
        guard let node = root?[name], !node.isNull else { return SettingsSection(file: label, name: name, mapping: nil) }
        guard let mapping = node.mapping else {
            throw CLIError("config file \(label)\(lineSuffix(node)): \(name) must be a mapping (key: value lines), got \(kindName(node))")
        }
        return SettingsSection(file: label, name: name, mapping: mapping)
    }

    /// The whole file as plain values, for `ConfigFile`'s Decodable model/train sections.
    var plainValues: [String: Any] {
        guard let root else { return [:] }
        return (Node.mapping(root).any as? [String: Any]) ?? [:]
    }
}

/// One mapping of a settings file (`kafka`, `kafka.client`, …) with typed, checked access.
struct SettingsSection {
    /// The file, for messages.
    let file: String
    /// The dotted name of this section (`kafka`, `featurize`).
    let name: String
    let mapping: Node.Mapping?

    var isEmpty: Bool { mapping?.isEmpty ?? true }
    var keys: [String] { mapping?.keys.compactMap(\.string) ?? [] }

    /// The value of `key`; nil when absent or null (`key:` or `key: ~`).
    func node(_ key: String) -> Node? {
        guard let n = mapping?[key], !n.isNull else { return nil }
        return n
    }

    func error(_ key: String, _ node: Node?, _ message: String) -> CLIError {
        CLIError("config file \(file)\(node.map(lineSuffix) ?? ""): \(name).\(key) \(message)")
    }

    /// Refuses keys this section does not have (a typo would otherwise be silently ignored).
    /// `moved` maps an old key to a message saying where it went.
    func checkKeys(_ known: [String], moved: [String: String] = [:]) throws {
        guard let mapping else { return }
        for (k, v) in mapping {
            let key = k.string ?? "\(k)"
            if let to = moved[key] { throw error(key, v, "is no longer read: \(to)") }
            if !known.contains(key) {
                throw error(key, k, "is not a setting; known: \(known.joined(separator: ", "))")
            }
        }
    }

    /// A scalar as text, exactly as written (`0123` stays `0123`). Empty text counts as absent.
    func string(_ key: String, expected: String = "a string") throws -> String? {
        guard let n = node(key) else { return nil }
        guard let s = n.scalar?.string else { throw error(key, n, "must be \(expected), got \(kindName(n))") }
        return s.isEmpty ? nil : s
    }

    func int(_ key: String) throws -> Int? {
        guard let n = node(key) else { return nil }
        guard let s = n.scalar, let v = Int.construct(from: s) else {
            throw error(key, n, "must be an integer, got \(describe(n))")
        }
        return v
    }

    func positiveInt(_ key: String) throws -> Int? {
        guard let v = try int(key) else { return nil }
        guard v > 0 else { throw error(key, node(key), "must be a positive integer, got \(v)") }
        return v
    }

    func nonNegativeInt(_ key: String) throws -> Int? {
        guard let v = try int(key) else { return nil }
        guard v >= 0 else { throw error(key, node(key), "must be ≥ 0, got \(v)") }
        return v
    }

    /// A nested mapping (`kafka.client`); absent → empty.
    func section(_ key: String) throws -> SettingsSection {
        guard let n = node(key) else { return SettingsSection(file: file, name: "\(name).\(key)", mapping: nil) }
        guard let m = n.mapping else { throw error(key, n, "must be a mapping (key: value lines), got \(kindName(n))") }
        return SettingsSection(file: file, name: "\(name).\(key)", mapping: m)
    }

    /// A mapping of librdkafka properties. Values pass through as written (YAML booleans become
    /// `true`/`false`, which is what librdkafka parses); lists and mappings are errors.
    func properties(_ key: String) throws -> [String: String] {
        let sub = try section(key)
        var out: [String: String] = [:]
        for (k, v) in sub.mapping ?? [:] {
            let name = k.string ?? "\(k)"
            guard let scalar = v.scalar else { throw sub.error(name, v, "must be a single value (a librdkafka property), got \(kindName(v))") }
            if v.isNull { throw sub.error(name, v, "has no value; give one or remove the line") }
            out[name] = v.isBool ? (Bool.construct(from: scalar).map { $0 ? "true" : "false" } ?? scalar.string) : scalar.string
        }
        return out
    }

    /// A sequence; absent → empty.
    func sequence(_ key: String) throws -> [Node] {
        guard let n = node(key) else { return [] }
        guard let s = n.sequence else { throw error(key, n, "must be a list, got \(kindName(n))") }
        return Array(s)
    }
}

private extension Node {
    // (Yams keeps Tag.name internal; the raw value is the same resolved tag.)
    var isNull: Bool { tag.rawValue == Tag.Name.null.rawValue }
    var isBool: Bool { tag.rawValue == Tag.Name.bool.rawValue }
}

private func lineSuffix(_ node: Node) -> String {
    node.mark.map { " line \($0.line)" } ?? ""
}

private func kindName(_ node: Node) -> String {
    switch node {
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .scalar(let s): return Node.scalar(s).isNull ? "nothing" : "'\(s.string)'"
    case .alias: return "an alias"
    }
}

private func describe(_ node: Node) -> String { kindName(node) }

// MARK: - Typed sections shared by several commands

/// The `kafka:` section.
///
/// ```yaml
/// kafka:
///   bootstrap: ""            # HOST:PORT[,…] of a real cluster; empty: the built-in default
///   brokers: 3               # streamrec broker
///   topics:
///     - {name: criteo, partitions: 8}
///   client: {}               # librdkafka properties for every client (SASL/SSL …)
///   producer: {linger.ms: 5} # producer-only properties
///   consumer: {}             # consumer-only properties
/// ```
struct KafkaFileSettings {
    struct Topic: Equatable { var name: String; var partitions: Int }
    var bootstrap: String? = nil
    var brokers: Int? = nil
    var topics: [Topic] = []
    var client: [String: String] = [:]
    var producer: [String: String] = [:]
    var consumer: [String: String] = [:]
}

/// The `redis:` section: `address` (HOST:PORT or a redis[s]:// URL), `prefix`, and the login and
/// TLS files (`password_file`, `tls_ca`, `tls_cert`, `tls_key`).
struct RedisFileSettings {
    var address: String? = nil
    var prefix: String? = nil
    var passwordFile: String? = nil
    var tlsCA: String? = nil
    var tlsCert: String? = nil
    var tlsKey: String? = nil
}

extension SettingsFile {
    func kafka() throws -> KafkaFileSettings {
        let s = try section("kafka")
        try s.checkKeys(["bootstrap", "brokers", "topics", "client", "producer", "consumer"])
        var out = KafkaFileSettings()
        out.bootstrap = try s.string("bootstrap", expected: "a string (HOST:PORT[,HOST:PORT…])")
        out.brokers = try s.positiveInt("brokers")
        for t in try s.sequence("topics") {
            guard let m = t.mapping, let name = m["name"]?.scalar?.string, !name.isEmpty,
                  let p = m["partitions"]?.scalar.flatMap(Int.construct), p > 0 else {
                throw s.error("topics", t, "entries must be {name: NAME, partitions: P > 0}, got \(describe(t))")
            }
            out.topics.append(.init(name: name, partitions: p))
        }
        out.client = try s.properties("client")
        out.producer = try s.properties("producer")
        out.consumer = try s.properties("consumer")
        return out
    }

    func redis() throws -> RedisFileSettings {
        let s = try section("redis")
        try s.checkKeys(["address", "prefix", "password_file", "tls_ca", "tls_cert", "tls_key"])
        return RedisFileSettings(address: try s.string("address", expected: "a string (HOST:PORT or redis[s]://…)"),
                                 prefix: try s.string("prefix"), passwordFile: try s.string("password_file"),
                                 tlsCA: try s.string("tls_ca"), tlsCert: try s.string("tls_cert"), tlsKey: try s.string("tls_key"))
    }
}
