// The option groups every command that talks to Kafka or Redis shares, and THE rule that
// resolves them. One place, so commands cannot drift apart (they did: featurize defaulted to
// 127.0.0.1:9092 while produce read the local broker's bootstrap file).
//
// Resolution rule, for every setting below — the first that is set wins:
//
//   1. the command-line flag
//   2. the environment variable (only where one exists; an empty value counts as unset)
//   3. the settings file (--config; each command names its default file)
//   4. the built-in default
//
//   setting          flag                         environment          settings file     built-in default
//   Kafka bootstrap  --bootstrap, --bootstrap-file STREAMREC_BOOTSTRAP  kafka.bootstrap   $STREAMREC_RUN_DIR/broker/bootstrap
//                    (or -X bootstrap.servers)                                            if it exists (run dir default
//                                                                                         runs/local), else 127.0.0.1:9092
//   Kafka properties -X key=value                 —                    kafka.client, then  the command's own (produce:
//                                                                      kafka.producer or   linger.ms=5, lz4, idempotence …)
//                                                                      kafka.consumer
//   Redis address    --redis                      STREAMREC_REDIS      redis.address     127.0.0.1:6379
//   Redis prefix     --prefix                     —                    redis.prefix      sr
//
// Resolve functions take the environment as a parameter so tests never mutate the process's.
import ArgumentParser
import Foundation
import Streaming

/// Where a resolved setting came from; printed in messages ("127.0.0.1:9092 (built-in default)").
enum SettingSource: Equatable, CustomStringConvertible {
    case flag(String)
    case environment(String)
    case file(path: String, key: String)
    case builtin(String)

    var description: String {
        switch self {
        case .flag(let name): return "from \(name)"
        case .environment(let name): return "from $\(name)"
        case .file(let path, let key): return "from \(key) in \(path)"
        case .builtin(let what): return what
        }
    }
}

/// A setting's value and its source.
struct Resolved<Value: Equatable>: Equatable, CustomStringConvertible {
    var value: Value
    var source: SettingSource
    var description: String { "\(value) (\(source))" }
}

/// The resolution rule as code: flag, then environment variable, then settings file, then the
/// built-in default (evaluated only when nothing else is set).
func resolveSetting<T: Equatable>(flag: (name: String, value: T?),
                                  environment: (name: String, value: T?)? = nil,
                                  file: (path: String?, key: String, value: T?),
                                  builtin: () throws -> Resolved<T>) rethrows -> Resolved<T> {
    if let v = flag.value { return Resolved(value: v, source: .flag(flag.name)) }
    if let environment, let v = environment.value { return Resolved(value: v, source: .environment(environment.name)) }
    if let v = file.value, let path = file.path { return Resolved(value: v, source: .file(path: path, key: file.key)) }
    return try builtin()
}

/// A non-empty environment variable.
private func variable(_ name: String, in environment: [String: String]) -> String? {
    guard let v = environment[name]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
    return v
}

// MARK: - --config

/// `--config FILE` for the commands whose settings are the cluster's: the `kafka:` and `redis:`
/// sections (and their own, e.g. `featurize:`). Default: configs/cluster.yaml when it exists.
struct SettingsOptions: ParsableArguments {
    static let defaultPath = "configs/cluster.yaml"

    @Option(help: ArgumentHelp("""
        Settings file (YAML): kafka:, redis: and this command's own section. Default: \(SettingsOptions.defaultPath) \
        if it exists. Flags and environment variables override it; /dev/null for none.
        """, valueName: "FILE"))
    var config: String?

    func load() throws -> SettingsFile { try SettingsFile.load(explicit: config, defaultPath: Self.defaultPath) }
}

// MARK: - Kafka

/// `-X key=value`: librdkafka properties, passed through unchanged. A group of its own so
/// commands that start their own cluster (bench featurize) take it without `--bootstrap`.
struct KafkaPropertyOptions: ParsableArguments {
    @Option(name: .customShort("X"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("""
                A librdkafka property, passed through unchanged (repeatable; SASL/SSL work). Overrides the \
                settings file's kafka.client and kafka.producer/kafka.consumer.
                """, valueName: "key=value"))
    var properties: [String] = []

    func validate() throws { _ = try parsed() }

    /// The properties as a dictionary (a later -X for the same key wins).
    func parsed() throws -> [String: String] {
        var out: [String: String] = [:]
        for item in properties {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
                throw ValidationError("-X expects key=value (a librdkafka property), got '\(item)'")
            }
            out[String(item[..<eq])] = String(item[item.index(after: eq)...])
        }
        return out
    }
}

/// Which of the settings file's kafka.producer / kafka.consumer properties apply.
enum KafkaRole { case producer, consumer }

/// Resolved Kafka client settings.
struct KafkaSettings: Equatable {
    var bootstrap: Resolved<String>
    /// librdkafka properties other than bootstrap.servers: settings file, then -X.
    var properties: [String: String]
    var config: KafkaConfig { KafkaConfig(bootstrapServers: bootstrap.value, properties) }
}

/// Where the Kafka brokers are and how to talk to them.
struct KafkaOptions: ParsableArguments {
    static let environmentVariable = "STREAMREC_BOOTSTRAP"
    static let fallbackBootstrap = "127.0.0.1:9092"

    @Option(help: ArgumentHelp("""
        Kafka bootstrap servers. First set wins: --bootstrap/--bootstrap-file, $\(KafkaOptions.environmentVariable), \
        kafka.bootstrap in --config, the local broker's file $STREAMREC_RUN_DIR/broker/bootstrap \
        (run dir default runs/local) if it exists, else \(KafkaOptions.fallbackBootstrap).
        """, valueName: "HOST:PORT[,HOST:PORT…]"))
    var bootstrap: String?

    @Option(help: ArgumentHelp("Read the bootstrap servers from FILE (as `streamrec broker --bootstrap-file` writes it).",
                               valueName: "FILE"))
    var bootstrapFile: String?

    @OptionGroup var librdkafka: KafkaPropertyOptions

    func validate() throws {
        if bootstrap != nil && bootstrapFile != nil { throw ValidationError("give --bootstrap or --bootstrap-file, not both") }
        if let bootstrap, bootstrap.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--bootstrap must not be empty") }
        if try librdkafka.parsed()["bootstrap.servers"] != nil && (bootstrap != nil || bootstrapFile != nil) {
            throw ValidationError("give the bootstrap servers once: --bootstrap, --bootstrap-file or -X bootstrap.servers")
        }
    }

    /// True when the command line names the brokers (selftest kafka starts a mock cluster otherwise).
    var bootstrapGiven: Bool {
        bootstrap != nil || bootstrapFile != nil || (try? librdkafka.parsed()["bootstrap.servers"]) != nil
    }

    /// The bootstrap servers and librdkafka properties for a client in `role`, by the rule at the
    /// top of this file.
    func resolve(_ settings: SettingsFile, role: KafkaRole,
                 environment: [String: String] = ProcessInfo.processInfo.environment) throws -> KafkaSettings {
        let file = try settings.kafka()
        let flag: (String, String?)
        if let bootstrapFile {
            flag = ("--bootstrap-file \(bootstrapFile)", try Self.readBootstrapFile(bootstrapFile, hint: "check the path"))
        } else if let fromX = try librdkafka.parsed()["bootstrap.servers"] {
            flag = ("-X bootstrap.servers", fromX)
        } else {
            flag = ("--bootstrap", bootstrap)
        }
        let resolved = try resolveSetting(
            flag: flag,
            environment: (Self.environmentVariable, variable(Self.environmentVariable, in: environment)),
            file: (settings.path, "kafka.bootstrap", file.bootstrap)) {
                let localFile = Self.localBootstrapFile(environment)
                if FileManager.default.fileExists(atPath: localFile) {
                    return Resolved(value: try Self.readBootstrapFile(localFile, hint: "is `streamrec broker` (cluster/up.sh) running?"),
                                    source: .builtin("from the local broker's \(localFile)"))
                }
                return Resolved(value: Self.fallbackBootstrap, source: .builtin("built-in default; no local broker file \(localFile)"))
            }
        return KafkaSettings(bootstrap: resolved, properties: try properties(settings, role: role))
    }

    /// librdkafka properties without bootstrap.servers: kafka.client, then kafka.producer or
    /// kafka.consumer, then -X.
    func properties(_ settings: SettingsFile, role: KafkaRole) throws -> [String: String] {
        let file = try settings.kafka()
        var properties = file.client.merging(role == .producer ? file.producer : file.consumer) { $1 }
        properties.merge(try librdkafka.parsed()) { $1 }
        properties["bootstrap.servers"] = nil
        return properties
    }

    /// `$STREAMREC_RUN_DIR/broker/bootstrap` (run dir default runs/local): where cluster/up.sh's
    /// broker writes its address.
    static func localBootstrapFile(_ environment: [String: String]) -> String {
        (variable("STREAMREC_RUN_DIR", in: environment) ?? "runs/local") + "/broker/bootstrap"
    }

    static func readBootstrapFile(_ path: String, hint: String) throws -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLIError("cannot read the bootstrap file \(path); \(hint)")
        }
        let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if value.isEmpty { throw CLIError("the bootstrap file \(path) is empty; \(hint)") }
        return value
    }
}

// MARK: - Redis

/// Resolved Redis feature-store settings.
struct RedisSettings: Equatable {
    var address: Resolved<String>
    var prefix: Resolved<String>
}

/// Where the Redis feature store is and which key prefix it uses.
struct RedisOptions: ParsableArguments {
    static let environmentVariable = "STREAMREC_REDIS"
    static let defaultAddress = "127.0.0.1:6379"
    static let defaultPrefix = "sr"

    @Option(help: ArgumentHelp("""
        Redis of the feature store. First set wins: --redis, $\(RedisOptions.environmentVariable), redis.address in --config, \
        \(RedisOptions.defaultAddress).
        """, valueName: "HOST:PORT"))
    var redis: String?

    @Option(help: ArgumentHelp("""
        Key prefix of the feature store in Redis. First set wins: --prefix, redis.prefix in --config, \(RedisOptions.defaultPrefix).
        """, valueName: "PREFIX"))
    var prefix: String?

    func validate() throws {
        if let redis {
            do { _ = try Self.checkAddress(redis, source: .flag("--redis")) } catch { throw ValidationError("\(error)") }
        }
        if let prefix, prefix.isEmpty { throw ValidationError("--prefix must not be empty") }
    }

    /// Address and prefix by the rule at the top of this file.
    func resolve(_ settings: SettingsFile,
                 environment: [String: String] = ProcessInfo.processInfo.environment) throws -> RedisSettings {
        let file = try settings.redis()
        let address = resolveSetting(
            flag: ("--redis", redis),
            environment: (Self.environmentVariable, variable(Self.environmentVariable, in: environment)),
            file: (settings.path, "redis.address", file.address)) {
                Resolved(value: Self.defaultAddress, source: .builtin("built-in default"))
            }
        let prefix = resolveSetting(flag: ("--prefix", prefix), file: (settings.path, "redis.prefix", file.prefix)) {
            Resolved(value: Self.defaultPrefix, source: .builtin("built-in default"))
        }
        return RedisSettings(address: try Self.checkAddress(address.value, source: address.source), prefix: prefix)
    }

    /// HOST:PORT with a port in 1…65535, or an error naming where the value came from.
    static func checkAddress(_ value: String, source: SettingSource) throws -> Resolved<String> {
        guard let colon = value.lastIndex(of: ":"), colon != value.startIndex,
              let port = Int(value[value.index(after: colon)...]), (1...65535).contains(port) else {
            throw CLIError("Redis address '\(value)' (\(source)) must be HOST:PORT, e.g. \(defaultAddress)")
        }
        return Resolved(value: value, source: source)
    }
}
