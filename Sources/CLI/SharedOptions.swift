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
//                    (or -X bootstrap.servers,                                            if it exists (run dir default
//                    then --kafka-config's)                                               runs/local), else 127.0.0.1:9092
//   Kafka properties -X key=value, then           —                    kafka.client, then  the command's own (produce:
//                    --kafka-config FILE                               kafka.producer or   linger.ms=5, lz4, idempotence …)
//                                                                      kafka.consumer
//   Redis address    --redis                      STREAMREC_REDIS      redis.address     127.0.0.1:6379
//   Redis password   --redis-password-file        STREAMREC_REDIS_     redis.            the password in the address
//                                                 PASSWORD[_FILE]      password_file     (none)
//   Redis TLS files  --redis-tls-ca, -cert, -key  STREAMREC_REDIS_     redis.tls_ca,     ?ca=, cert=, key= of a rediss://
//                                                 TLS_CA, _CERT, _KEY  tls_cert, tls_key address; CA: the system's store
//   Redis prefix     --prefix                     —                    redis.prefix      sr
//
// Secrets (Redis passwords, librdkafka's sasl.password, ssl.key.password …) never need to be on a
// command line (the files and variables above) and are never printed: a Redis address prints
// with its password masked, and Kafka property values are not logged.
//
// Resolve functions take the environment as a parameter so tests never mutate the process's.
import ArgumentParser
import Logging
import Observability
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

// MARK: - --log-level, --log-format

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}

/// `--log-level` and `--log-format`, shared by every command that logs. Flag, then
/// `$STREAMREC_LOG_LEVEL` / `$STREAMREC_LOG_FORMAT` (so every rank `mpirun` starts inherits
/// them), then info and text.
struct LogOptions: ParsableArguments {
    @Option(help: ArgumentHelp("""
        Lowest level printed: trace, debug, info, notice, warning, error, critical. \
        Default: $STREAMREC_LOG_LEVEL, else info.
        """, valueName: "LEVEL"))
    var logLevel: Logger.Level?

    @Option(help: ArgumentHelp("""
        text (lines for a person; warnings and errors say their level) or json (one object per line: \
        time, level, component, rank or worker, message, fields). Default: $STREAMREC_LOG_FORMAT, else text.
        """, valueName: "FORMAT"))
    var logFormat: LogFormat?

    func resolved(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> (Logger.Level, LogFormat) {
        func env<T: RawRepresentable>(_ name: String, _: T.Type) throws -> T? where T.RawValue == String {
            guard let raw = environment[name], !raw.isEmpty else { return nil }
            guard let value = T(rawValue: raw.lowercased()) else { throw ValidationError("$\(name)=\(raw) is not a valid value; see --help") }
            return value
        }
        return (try logLevel ?? env("STREAMREC_LOG_LEVEL", Logger.Level.self) ?? .info,
                try logFormat ?? env("STREAMREC_LOG_FORMAT", LogFormat.self) ?? .text)
    }

    /// Bootstraps swift-log for this process (and librdkafka's messages through it) and returns
    /// the logger of `component`, its text lines starting with `tag` when given.
    func start(_ component: String, tag: String? = nil, stream: LogStream = .standardError) throws -> Logger {
        let (level, format) = try resolved()
        LogSetup.bootstrap(level: level, format: format, stream: stream)
        var kafka = Logger(label: "kafka")
        if let tag { kafka = kafka.tagged("\(tag) librdkafka:") } else { kafka = kafka.tagged("librdkafka:") }
        KafkaLog.shared.install(logger: kafka)
        let logger = Logger(label: component)
        return tag.map { logger.tagged($0) } ?? logger
    }
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

/// `-X key=value` and `--kafka-config FILE`: librdkafka properties, passed through unchanged. A
/// group of its own so commands that start their own cluster (bench featurize) take it without
/// `--bootstrap`.
struct KafkaPropertyOptions: ParsableArguments {
    @Option(help: ArgumentHelp("""
                librdkafka properties from FILE: key=value lines, # comments (so SASL/SSL secrets stay off the command line). \
                -X overrides it; it overrides the settings file.
                """, valueName: "FILE"))
    var kafkaConfig: String?

    @Option(name: .customShort("X"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("""
                A librdkafka property, passed through unchanged (repeatable; SASL/SSL work). Overrides the \
                settings file's kafka.client and kafka.producer/kafka.consumer.
                """, valueName: "key=value"))
    var properties: [String] = []

    func validate() throws { _ = try parsed(); _ = try fileProperties() }

    /// These options again, for a command that runs a child `streamrec` with them.
    var arguments: [String] { (kafkaConfig.map { ["--kafka-config", $0] } ?? []) + properties.flatMap { ["-X", $0] } }

    /// The properties of --kafka-config FILE (empty without it).
    func fileProperties() throws -> [String: String] {
        guard let kafkaConfig else { return [:] }
        return try Self.readKafkaConfig(kafkaConfig)
    }

    /// Parses a librdkafka properties file: `key=value` per line (spaces around both trimmed),
    /// `#` comments and blank lines ignored, a later line for the same key wins. A malformed line
    /// is an error with FILE:LINE that does not echo the line (it may hold a secret).
    static func readKafkaConfig(_ path: String) throws -> [String: String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLIError("cannot read the Kafka config file \(path) (--kafka-config); check the path and its permissions")
        }
        var out: [String: String] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let key = line.firstIndex(of: "=").map { line[..<$0].trimmingCharacters(in: .whitespaces) } ?? ""
            guard let eq = line.firstIndex(of: "="), !key.isEmpty, !key.contains(" ") else {
                throw CLIError("\(path):\(n + 1): expected key=value (a librdkafka property such as security.protocol=SASL_SSL) "
                               + "or a # comment")
            }
            out[key] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }

    /// The -X properties as a dictionary (a later -X for the same key wins).
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
            || (try? librdkafka.fileProperties()["bootstrap.servers"]) != nil
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
        } else if bootstrap == nil, let fromFile = try librdkafka.fileProperties()["bootstrap.servers"] {
            flag = ("bootstrap.servers in --kafka-config \(librdkafka.kafkaConfig ?? "")", fromFile)
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
    /// kafka.consumer, then --kafka-config, then -X (the later wins).
    func properties(_ settings: SettingsFile, role: KafkaRole) throws -> [String: String] {
        let file = try settings.kafka()
        var properties = file.client.merging(role == .producer ? file.producer : file.consumer) { $1 }
        properties.merge(try librdkafka.fileProperties()) { $1 }
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
    /// Address, login and TLS; prints with the password masked.
    var address: Resolved<RedisEndpoint>
    var prefix: Resolved<String>
}

/// Where the Redis feature store is, how to log in to it and which key prefix it uses.
struct RedisOptions: ParsableArguments {
    static let environmentVariable = "STREAMREC_REDIS"
    static let passwordVariable = "STREAMREC_REDIS_PASSWORD"
    static let passwordFileVariable = "STREAMREC_REDIS_PASSWORD_FILE"
    static let defaultAddress = "127.0.0.1:6379"
    static let defaultPrefix = "sr"

    @Option(help: ArgumentHelp("""
        Redis of the feature store: HOST:PORT, redis://[USER[:PASSWORD]@]HOST:PORT[/DB] or rediss://… (TLS).         First set wins: --redis, $\(RedisOptions.environmentVariable), redis.address in --config, \(RedisOptions.defaultAddress).
        """, valueName: "ADDRESS"))
    var redis: String?

    @Option(help: ArgumentHelp("""
        Redis password from FILE (trimmed), so it is not on the command line. First set wins: this,         $\(RedisOptions.passwordVariable) or $\(RedisOptions.passwordFileVariable), redis.password_file in --config,         the password in the address.
        """, valueName: "FILE"))
    var redisPasswordFile: String?

    @Option(help: ArgumentHelp("""
        rediss://: CA certificates (PEM) the server's certificate must chain to (default: the system's).         Also $STREAMREC_REDIS_TLS_CA, redis.tls_ca, ?ca= in the address.
        """, valueName: "FILE"))
    var redisTlsCa: String?

    @Option(help: ArgumentHelp("""
        rediss://: client certificate (PEM) for servers that require one (with --redis-tls-key).         Also $STREAMREC_REDIS_TLS_CERT, redis.tls_cert, ?cert= in the address.
        """, valueName: "FILE"))
    var redisTlsCert: String?

    @Option(help: ArgumentHelp("""
        rediss://: the client certificate's private key (PEM). Also $STREAMREC_REDIS_TLS_KEY, redis.tls_key, ?key= in the address.
        """, valueName: "FILE"))
    var redisTlsKey: String?

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

    /// Address (with login and TLS) and prefix by the rule at the top of this file.
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
        var endpoint = try Self.checkAddress(address.value, source: address.source)
        endpoint.value.password = try password(file, settings.path, environment, address: endpoint)
        if endpoint.value.username != nil && endpoint.value.password == nil {
            throw CLIError("""
                the Redis address \(endpoint) names the user \(endpoint.value.username!) but no password is set:                 give it with --redis-password-file FILE, $\(Self.passwordVariable) or $\(Self.passwordFileVariable)
                """)
        }
        try applyTLS(to: &endpoint, file, settings.path, environment)
        return RedisSettings(address: endpoint, prefix: prefix)
    }

    /// A password given literally ($STREAMREC_REDIS_PASSWORD) or as a file to read.
    private enum Secret: Equatable { case value(String), file(String), address }

    /// The password by the rule at the top of this file; the address's own comes last.
    private func password(_ file: RedisFileSettings, _ path: String?, _ environment: [String: String],
                          address: Resolved<RedisEndpoint>) throws -> String? {
        let literal = variable(Self.passwordVariable, in: environment), fromFile = variable(Self.passwordFileVariable, in: environment)
        if literal != nil && fromFile != nil {
            throw CLIError("set $\(Self.passwordVariable) or $\(Self.passwordFileVariable), not both")
        }
        let secret = resolveSetting(
            flag: ("--redis-password-file", redisPasswordFile.map(Secret.file)),
            environment: literal != nil ? (Self.passwordVariable, literal.map(Secret.value)) : (Self.passwordFileVariable, fromFile.map(Secret.file)),
            file: (path, "redis.password_file", file.passwordFile.map(Secret.file))) {
                Resolved(value: .address, source: .builtin("the address"))
            }
        switch secret.value {
        case .address: return address.value.password
        case .value(let v): return v
        case .file(let f):
            guard let text = try? String(contentsOfFile: f, encoding: .utf8) else {
                throw CLIError("cannot read the Redis password file \(f) (\(secret.source)); check the path and its permissions")
            }
            let v = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if v.isEmpty { throw CLIError("the Redis password file \(f) (\(secret.source)) is empty") }
            return v
        }
    }

    /// --redis-tls-ca/-cert/-key by the rule at the top of this file (the address's ?ca= etc. last);
    /// they need a rediss:// address and readable files.
    private func applyTLS(to endpoint: inout Resolved<RedisEndpoint>, _ file: RedisFileSettings, _ path: String?,
                          _ environment: [String: String]) throws {
        func setting(_ flag: String?, _ name: String, _ key: String, _ fileValue: String?, _ fromAddress: String?) throws -> String? {
            let env = "STREAMREC_REDIS_TLS_\(name)"
            let r = resolveSetting(flag: ("--redis-tls-\(name.lowercased())", flag),
                                   environment: (env, variable(env, in: environment)),
                                   file: (path, "redis.\(key)", fileValue)) {
                Resolved(value: fromAddress ?? "", source: .builtin("the address"))
            }
            guard !r.value.isEmpty else { return nil }
            guard endpoint.value.tls != nil else {
                throw CLIError("a Redis TLS file is set (\(r.source)), but the Redis address \(endpoint.value) is not rediss://; use rediss://HOST:PORT or unset it")
            }
            guard FileManager.default.isReadableFile(atPath: r.value) else {
                throw CLIError("cannot read the Redis TLS file \(r.value) (\(r.source)); check the path")
            }
            return r.value
        }
        let tls = endpoint.value.tls
        let ca = try setting(redisTlsCa, "CA", "tls_ca", file.tlsCA, tls?.caFile)
        let cert = try setting(redisTlsCert, "CERT", "tls_cert", file.tlsCert, tls?.certificateFile)
        let key = try setting(redisTlsKey, "KEY", "tls_key", file.tlsKey, tls?.keyFile)
        guard endpoint.value.tls != nil else { return }
        if (cert == nil) != (key == nil) {
            throw CLIError("a Redis client certificate needs both --redis-tls-cert and --redis-tls-key (or their variables/settings)")
        }
        endpoint.value.tls?.caFile = ca
        endpoint.value.tls?.certificateFile = cert
        endpoint.value.tls?.keyFile = key
    }

    /// A Redis address (see `RedisEndpoint`), or an error naming where the value came from.
    static func checkAddress(_ value: String, source: SettingSource) throws -> Resolved<RedisEndpoint> {
        do { return Resolved(value: try RedisEndpoint(parsing: value), source: source) } catch {
            throw CLIError("\(error) (\(source)), e.g. \(defaultAddress)")
        }
    }
}
