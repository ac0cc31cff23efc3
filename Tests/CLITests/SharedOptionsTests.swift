// The shared Kafka/Redis option groups, their one resolution rule (flag > environment > settings
// file > built-in default) and the one settings-file loader. The environment is passed in, never
// set: tests do not touch the process's environment.
import Foundation
import Streaming
import Testing
import TestSupport
@testable import streamrec

/// A settings file with `yaml` in a fresh directory (removed by the caller via `dir`).
private func settingsFile(_ yaml: String, name: String = "settings.yaml") throws -> (dir: URL, path: String) {
    let dir = try temporaryTestDirectory("settings")
    let path = dir.appendingPathComponent(name).path
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    return (dir, path)
}

/// The error text `body` throws (empty if it does not throw).
private func errorText(_ body: () throws -> Void) -> String {
    do { try body(); return "" } catch { return "\(error)" }
}

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

@Suite("shared options: Kafka resolution")
struct KafkaResolutionTests {
    let yaml = """
        kafka:
          bootstrap: file-host:9092
          client: {security.protocol: SASL_SSL, sasl.password: "0123", enable.ssl.certificate.verification: false}
          producer: {linger.ms: 50}
          consumer: {fetch.wait.max.ms: 10, security.protocol: SSL}
        """

    @Test("flag > environment > settings file > local broker file > 127.0.0.1:9092")
    func bootstrapOrder() throws {
        let (dir, path) = try settingsFile(yaml)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = try SettingsFile.load(path)
        let env = ["STREAMREC_BOOTSTRAP": "env-host:9092", "STREAMREC_RUN_DIR": dir.path]

        let flag = try KafkaOptions.parse(["--bootstrap", "flag-host:9092"]).resolve(file, role: .consumer, environment: env)
        #expect(flag.bootstrap == Resolved(value: "flag-host:9092", source: .flag("--bootstrap")))

        let none = try KafkaOptions.parse([])
        #expect(try none.resolve(file, role: .consumer, environment: env).bootstrap
                == Resolved(value: "env-host:9092", source: .environment("STREAMREC_BOOTSTRAP")))
        // An empty variable is unset.
        #expect(try none.resolve(file, role: .consumer, environment: ["STREAMREC_BOOTSTRAP": " ", "STREAMREC_RUN_DIR": dir.path]).bootstrap
                == Resolved(value: "file-host:9092", source: .file(path: path, key: "kafka.bootstrap")))
        #expect(try none.resolve(file, role: .consumer, environment: ["STREAMREC_RUN_DIR": dir.path]).bootstrap.value == "file-host:9092")

        // No flag, variable or file setting: the local broker's bootstrap file if it exists …
        #expect(try none.resolve(.none, role: .consumer, environment: ["STREAMREC_RUN_DIR": dir.path]).bootstrap
                == Resolved(value: "127.0.0.1:9092", source: .builtin("built-in default; no local broker file \(dir.path)/broker/bootstrap")))
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("broker"), withIntermediateDirectories: true)
        try "127.0.0.1:40001,127.0.0.1:40002\n".write(to: dir.appendingPathComponent("broker/bootstrap"), atomically: true, encoding: .utf8)
        let local = try none.resolve(.none, role: .consumer, environment: ["STREAMREC_RUN_DIR": dir.path])
        #expect(local.bootstrap.value == "127.0.0.1:40001,127.0.0.1:40002")
        #expect("\(local.bootstrap.source)".contains("local broker"))
        // … and an empty kafka.bootstrap in the file means "not set" (configs/cluster.yaml ships it so).
        let empty = try SettingsFile.parse("kafka:\n  bootstrap: \"\"\n", path: "x.yaml")
        #expect(try none.resolve(empty, role: .consumer, environment: ["STREAMREC_RUN_DIR": dir.path]).bootstrap.value == "127.0.0.1:40001,127.0.0.1:40002")
    }

    @Test("--bootstrap-file and -X bootstrap.servers are flags; two of them are a usage error")
    func bootstrapFlags() throws {
        let (dir, path) = try settingsFile(yaml)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = try SettingsFile.load(path)
        let boot = dir.appendingPathComponent("boot").path
        try " 10.0.0.1:9092 \n".write(toFile: boot, atomically: true, encoding: .utf8)
        let env = ["STREAMREC_BOOTSTRAP": "env-host:9092"]
        #expect(try KafkaOptions.parse(["--bootstrap-file", boot]).resolve(file, role: .producer, environment: env).bootstrap.value == "10.0.0.1:9092")
        let x = try KafkaOptions.parse(["-X", "bootstrap.servers=x-host:9093"]).resolve(file, role: .producer, environment: env)
        #expect(x.bootstrap == Resolved(value: "x-host:9093", source: .flag("-X bootstrap.servers")))
        #expect(x.properties["bootstrap.servers"] == nil)
        #expect(x.config["bootstrap.servers"] == "x-host:9093")

        #expect(throws: (any Error).self) { try KafkaOptions.parse(["--bootstrap", "a:1", "--bootstrap-file", boot]) }
        #expect(throws: (any Error).self) { try KafkaOptions.parse(["--bootstrap", "a:1", "-X", "bootstrap.servers=b:2"]) }
        #expect(throws: (any Error).self) { try KafkaOptions.parse(["-X", "novalue"]) }
        #expect(throws: (any Error).self) { try KafkaOptions.parse(["-X", "=v"]) }
        let missing = errorText { _ = try KafkaOptions.parse(["--bootstrap-file", dir.appendingPathComponent("nope").path]).resolve(file, role: .producer, environment: [:]) }
        #expect(missing.contains("cannot read the bootstrap file"), "\(missing)")
    }

    @Test("properties: kafka.client, then kafka.producer or kafka.consumer, then -X; values exactly as written")
    func properties() throws {
        let (dir, path) = try settingsFile(yaml)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = try SettingsFile.load(path)
        let options = try KafkaOptions.parse(["-X", "sasl.username=alice", "-X", "linger.ms=7", "-X", "sasl.password=a=b"])
        let producer = try options.resolve(file, role: .producer, environment: [:]).properties
        #expect(producer == ["security.protocol": "SASL_SSL", "sasl.password": "a=b", "enable.ssl.certificate.verification": "false",
                             "linger.ms": "7", "sasl.username": "alice"])
        let consumer = try KafkaOptions.parse([]).resolve(file, role: .consumer, environment: [:]).properties
        #expect(consumer == ["security.protocol": "SSL", "sasl.password": "0123", "enable.ssl.certificate.verification": "false",
                             "fetch.wait.max.ms": "10"])
        // An unquoted number is passed as written, not as YAML's reading of it.
        let raw = try SettingsFile.parse("kafka:\n  client: {sasl.password: 0123, retries: 1e3, flag: yes}\n", path: "x.yaml")
        #expect(try raw.kafka().client == ["sasl.password": "0123", "retries": "1e3", "flag": "true"])
    }
}

@Suite("shared options: Redis resolution")
struct RedisResolutionTests {
    @Test("address: --redis > $STREAMREC_REDIS > redis.address > 127.0.0.1:6379; prefix: --prefix > redis.prefix > sr")
    func order() throws {
        let (dir, path) = try settingsFile("redis:\n  address: file-host:6380\n  prefix: fp\n")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = try SettingsFile.load(path)
        let env = ["STREAMREC_REDIS": "env-host:6381"]

        let flags = try RedisOptions.parse(["--redis", "flag-host:6382", "--prefix", "p1"]).resolve(file, environment: env)
        #expect(flags.address == Resolved(value: RedisEndpoint(host: "flag-host", port: 6382), source: .flag("--redis")))
        #expect(flags.prefix == Resolved(value: "p1", source: .flag("--prefix")))

        let none = try RedisOptions.parse([])
        let fromEnv = try none.resolve(file, environment: env)
        #expect(fromEnv.address == Resolved(value: RedisEndpoint(host: "env-host", port: 6381), source: .environment("STREAMREC_REDIS")))
        #expect(fromEnv.prefix == Resolved(value: "fp", source: .file(path: path, key: "redis.prefix")))

        let fromFile = try none.resolve(file, environment: [:])
        #expect(fromFile.address == Resolved(value: RedisEndpoint(host: "file-host", port: 6380), source: .file(path: path, key: "redis.address")))

        let builtin = try none.resolve(.none, environment: ["STREAMREC_REDIS": ""])
        #expect(builtin.address.value.description == "127.0.0.1:6379" && builtin.prefix.value == "sr")
        if case .builtin = builtin.address.source {} else { Issue.record("expected the built-in default, got \(builtin.address.source)") }
    }

    @Test("a malformed address is an error naming where it came from")
    func badAddress() throws {
        #expect(throws: (any Error).self) { try RedisOptions.parse(["--redis", "nohostport"]) }
        #expect(throws: (any Error).self) { try RedisOptions.parse(["--prefix", ""]) }
        let fromEnv = errorText { _ = try RedisOptions.parse([]).resolve(.none, environment: ["STREAMREC_REDIS": "localhost"]) }
        #expect(fromEnv.contains("'localhost'") && fromEnv.contains("$STREAMREC_REDIS") && fromEnv.contains("HOST:PORT"), "\(fromEnv)")
        let fromFile = errorText { _ = try RedisOptions.parse([]).resolve(try SettingsFile.parse("redis: {address: 'h:99999'}", path: "r.yaml"), environment: [:]) }
        #expect(fromFile.contains("redis.address in r.yaml"), "\(fromFile)")
    }
}

@Suite("serve: the feature store by the shared Redis rule")
struct ServeFeatureStoreTests {
    @Test("serve reads Redis only when an address is set by flag, environment or settings file, and not with --no-feature-store")
    func onlyWhenConfigured() throws {
        let (dir, path) = try settingsFile("redis:\n  address: file-host:6380\n  prefix: fp\n")
        let (dir2, prefixOnly) = try settingsFile("redis:\n  prefix: fp\n")
        defer { try? FileManager.default.removeItem(at: dir); try? FileManager.default.removeItem(at: dir2) }
        func resolve(_ args: [String], _ env: [String: String] = [:]) throws -> (address: String, prefix: String, ms: Int64)? {
            let s = try Serve.parse(["--checkpoints", "ckpts"] + args).featureStoreSettings(environment: env).settings
            return s.map { ($0.address.description, $0.prefix, $0.timeout.components.seconds * 1000 + $0.timeout.components.attoseconds / 1_000_000_000_000_000) }
        }
        #expect(try resolve(["--config", "/dev/null"]) == nil)
        #expect(try resolve(["--config", prefixOnly]) == nil)
        #expect(try resolve(["--config", "/dev/null"], ["STREAMREC_REDIS": ""]) == nil)
        #expect(try resolve(["--config", "/dev/null", "--redis", "h:1", "--prefix", "p"])! == ("h:1", "p", 200))
        #expect(try resolve(["--config", "/dev/null"], ["STREAMREC_REDIS": "e:2"])! == ("e:2", "sr", 200))
        #expect(try resolve(["--config", path, "--feature-store-timeout-ms", "50"])! == ("file-host:6380", "fp", 50))
        #expect(try resolve(["--config", path, "--no-feature-store"]) == nil)
        let off = try Serve.parse(["--checkpoints", "c", "--config", "/dev/null"]).featureStoreSettings(environment: [:]).description
        #expect(off.contains("feature store: off") && off.contains("--redis"), "\(off)")
        #expect(throws: (any Error).self) { try Serve.parse(["--checkpoints", "c", "--feature-store-timeout-ms", "0"]) }
    }
}

@Suite("settings files: one loader, clear errors")
struct SettingsFileTests {
    @Test("errors name the file, the line and the key, and say what is expected", arguments: [
        ("kafka:\n  bootstrap: {host: a}\n", "line 2: kafka.bootstrap must be a string (HOST:PORT[,HOST:PORT…]), got a mapping"),
        ("kafka:\n  brokers: three\n", "kafka.brokers must be an integer, got 'three'"),
        ("kafka:\n  brokers: 0\n", "kafka.brokers must be a positive integer, got 0"),
        ("kafka:\n  topics: criteo\n", "kafka.topics must be a list"),
        ("kafka:\n  topics:\n    - {name: a}\n", "kafka.topics entries must be {name: NAME, partitions: P > 0}"),
        ("kafka:\n  client: [a, b]\n", "kafka.client must be a mapping"),
        ("kafka:\n  client:\n    sasl.mechanisms: [PLAIN]\n", "kafka.client.sasl.mechanisms must be a single value"),
        ("kafka:\n  bootstrp: a:1\n", "line 2: kafka.bootstrp is not a setting; known: bootstrap, brokers"),
        ("kafka: a:1\n", "line 1: kafka must be a mapping"),
        ("redis:\n  address: [a]\n", "redis.address must be a string"),
        ("redis:\n  adress: a:1\n", "redis.adress is not a setting; known: address, prefix"),
        ("featurize:\n  bootstrap: a:1\n", "featurize.bootstrap is no longer read: move it to kafka.bootstrap"),
        ("featurize:\n  kafka_properties: {}\n", "featurize.kafka_properties is no longer read: move them to kafka.consumer"),
        ("featurize:\n  batch_size: -1\n", "featurize.batch_size must be a positive integer, got -1"),
        ("- kafka\n- redis\n", "must be a YAML mapping of sections (kafka:, redis:, …), got a list"),
        ("kafka: [\n", "is not valid YAML"),
    ])
    func errors(_ yaml: String, _ expected: String) throws {
        let (dir, path) = try settingsFile(yaml)
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = errorText {
            let file = try SettingsFile.load(path)
            _ = try file.kafka()
            _ = try file.redis()
            _ = try FeaturizeSettings(file)
        }
        #expect(text.hasPrefix("config file \(path)"), "\(text)")
        #expect(text.contains(expected), "\(text)")
    }

    @Test("a named file must exist; the default file is optional; an empty file or /dev/null has no settings")
    func files() throws {
        let dir = try temporaryTestDirectory("settings")
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = dir.appendingPathComponent("missing.yaml").path
        let e = errorText { _ = try SettingsFile.load(missing) }
        #expect(e.contains("config file \(missing) does not exist") && e.contains("/dev/null"), "\(e)")
        #expect(errorText { _ = try SettingsFile.load(dir.path) }.contains("is a directory"))
        #expect(try SettingsFile.load(explicit: nil, defaultPath: missing).path == nil)
        #expect(throws: (any Error).self) { try SettingsFile.load(explicit: missing, defaultPath: nil) }
        let comment = dir.appendingPathComponent("comment.yaml").path
        try "# only a comment\n".write(toFile: comment, atomically: true, encoding: .utf8)
        for empty in ["/dev/null", comment] {
            let f = try SettingsFile.load(empty)
            #expect(try f.kafka().bootstrap == nil && f.plainValues.isEmpty)
            #expect(try RedisOptions.parse([]).resolve(f, environment: [:]).address.value.description == "127.0.0.1:6379")
        }
        // (Root reads any file, so the unreadable case only runs as another user.)
        if getuid() != 0 {
            let unreadable = dir.appendingPathComponent("unreadable.yaml").path
            try "kafka: {}\n".write(toFile: unreadable, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: unreadable)
            #expect(errorText { _ = try SettingsFile.load(unreadable) }.contains("cannot be read"))
        }
    }

    @Test("the shipped configs load through the one loader, and their defaults agree")
    func shippedConfigs() throws {
        let env = ["STREAMREC_RUN_DIR": "/nonexistent-run-dir"]
        var bootstraps: Set<String> = [], redis: Set<String> = []
        for name in ["cluster.yaml", "featurize.yaml", "widedeep.yaml"] {
            let file = try SettingsFile.load(repoRoot.appendingPathComponent("configs/\(name)").path)
            bootstraps.insert(try KafkaOptions.parse([]).resolve(file, role: .consumer, environment: env).bootstrap.value)
            let r = try RedisOptions.parse([]).resolve(file, environment: env)
            redis.insert("\(r.address.value) \(r.prefix.value)")
            _ = try FeaturizeSettings(file)
        }
        #expect(bootstraps == ["127.0.0.1:9092"])
        #expect(redis == ["127.0.0.1:6379 sr"])
        let cluster = try SettingsFile.load(repoRoot.appendingPathComponent("configs/cluster.yaml").path).kafka()
        #expect(cluster.topics.contains(.init(name: "criteo", partitions: 8)) && cluster.brokers == 3)
        #expect(cluster.producer["linger.ms"] == "5")
        let featurize = try FeaturizeSettings(try SettingsFile.load(repoRoot.appendingPathComponent("configs/featurize.yaml").path))
        #expect(featurize.batchSize == 1000 && featurize.featureShards == 8 && featurize.topic == nil && featurize.kind == "criteo")
        let model = try ConfigFile.load(try SettingsFile.load(repoRoot.appendingPathComponent("configs/widedeep.yaml").path), preset: "small")
        #expect(model.model.embeddingSize == 16 && model.train.batchSize == 1000)
    }
}

@Suite("produce --format")
struct ProduceFormatTests {
    private func parse(_ extra: [String]) throws -> Produce { try Produce.parse(["--data", "x.csv"] + extra) }

    @Test("behavior keys by the user (field 1, comma) and defaults to the behaviour topic")
    func behavior() throws {
        let p = try parse(["--format", "behavior"])
        #expect(try p.keying() == .field(index: 0, separator: UInt8(ascii: ",")))
        #expect(p.format.defaultTopic == "behavior")
        // Saying the same thing explicitly is fine.
        #expect(try parse(["--format", "behavior", "--key-field", "1", "--field-separator", ","]).keying() == .field(index: 0, separator: 0x2C))
    }

    @Test("a --key-field or --field-separator contradicting --format behavior is a usage error")
    func conflicts() throws {
        #expect(throws: (any Error).self) { try parse(["--format", "behavior", "--key-field", "2"]) }
        #expect(throws: (any Error).self) { try parse(["--format", "behavior", "--field-separator", "tab"]) }
        #expect(throws: (any Error).self) { try parse(["--format", "xml"]) }
    }

    @Test("criteo (the default) and lines key by the whole row unless --key-field says otherwise")
    func others() throws {
        #expect(try parse([]).keying() == .wholeRow)
        #expect(try parse([]).format == .criteo && ProduceFormat.criteo.defaultTopic == "criteo")
        #expect(try parse(["--format", "lines"]).keying() == .wholeRow)
        #expect(try parse(["--format", "lines", "--key-field", "3"]).keying() == .field(index: 2, separator: 0x09))
        #expect(try parse(["--key-field", "2", "--field-separator", "|"]).keying() == .field(index: 1, separator: UInt8(ascii: "|")))
    }
}

@Suite("shared options: Redis login and TLS")
struct RedisLoginResolutionTests {
    @Test("password: --redis-password-file > $STREAMREC_REDIS_PASSWORD[_FILE] > redis.password_file > the address's")
    func passwordOrder() throws {
        let dir = try temporaryTestDirectory("redislogin")
        defer { try? FileManager.default.removeItem(at: dir) }
        func secret(_ name: String, _ value: String) throws -> String {
            let path = dir.appendingPathComponent(name).path
            try value.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let flagFile = try secret("flag", " from-flag\n"), envFile = try secret("env", "from-env-file\n"), setFile = try secret("set", "from-settings")
        let settings = try SettingsFile.parse("redis: {address: 'redis://alice:from-url@h:1', password_file: '\(setFile)'}", path: "s.yaml")
        let none = try RedisOptions.parse([])
        #expect(try RedisOptions.parse(["--redis-password-file", flagFile]).resolve(settings, environment: ["STREAMREC_REDIS_PASSWORD": "x"])
                    .address.value.password == "from-flag")
        #expect(try none.resolve(settings, environment: ["STREAMREC_REDIS_PASSWORD": "from-env"]).address.value.password == "from-env")
        #expect(try none.resolve(settings, environment: ["STREAMREC_REDIS_PASSWORD_FILE": envFile]).address.value.password == "from-env-file")
        #expect(try none.resolve(settings, environment: [:]).address.value.password == "from-settings")
        let url = try none.resolve(.none, environment: ["STREAMREC_REDIS": "redis://alice:from-url@h:1"])
        #expect(url.address.value.password == "from-url" && url.address.value.username == "alice")
        #expect("\(url.address)" == "redis://alice:***@h:1 (from $STREAMREC_REDIS)")

        let both = errorText { _ = try none.resolve(.none, environment: ["STREAMREC_REDIS_PASSWORD": "a", "STREAMREC_REDIS_PASSWORD_FILE": envFile]) }
        #expect(both.contains("not both"), "\(both)")
        let missing = errorText { _ = try RedisOptions.parse(["--redis-password-file", dir.appendingPathComponent("nope").path]).resolve(.none, environment: [:]) }
        #expect(missing.contains("cannot read the Redis password file") && missing.contains("--redis-password-file"), "\(missing)")
        let empty = try secret("empty", "\n")
        #expect(errorText { _ = try RedisOptions.parse(["--redis-password-file", empty]).resolve(.none, environment: [:]) }.contains("is empty"))
        let noPassword = errorText { _ = try RedisOptions.parse(["--redis", "redis://bob@h:1"]).resolve(.none, environment: [:]) }
        #expect(noPassword.contains("no password is set") && noPassword.contains("$STREAMREC_REDIS_PASSWORD"), "\(noPassword)")
    }

    @Test("TLS files: flag > environment > settings file > the address's ?ca=; they need rediss:// and readable files")
    func tlsFiles() throws {
        let dir = try temporaryTestDirectory("redistls")
        defer { try? FileManager.default.removeItem(at: dir) }
        var files: [String: String] = [:]
        for name in ["flag-ca", "env-ca", "file-ca", "url-ca", "cert", "key"] {
            files[name] = dir.appendingPathComponent(name).path
            try "pem".write(toFile: files[name]!, atomically: true, encoding: .utf8)
        }
        let settings = try SettingsFile.parse("redis: {address: 'rediss://h:1?ca=\(files["url-ca"]!)', tls_ca: '\(files["file-ca"]!)'}", path: "s.yaml")
        let none = try RedisOptions.parse([])
        #expect(try RedisOptions.parse(["--redis-tls-ca", files["flag-ca"]!]).resolve(settings, environment: ["STREAMREC_REDIS_TLS_CA": files["env-ca"]!])
                    .address.value.tls?.caFile == files["flag-ca"])
        #expect(try none.resolve(settings, environment: ["STREAMREC_REDIS_TLS_CA": files["env-ca"]!]).address.value.tls?.caFile == files["env-ca"])
        #expect(try none.resolve(settings, environment: [:]).address.value.tls?.caFile == files["file-ca"])
        #expect(try none.resolve(.none, environment: ["STREAMREC_REDIS": "rediss://h:1?ca=\(files["url-ca"]!)"]).address.value.tls?.caFile == files["url-ca"])
        let mutual = try RedisOptions.parse(["--redis", "rediss://h:1", "--redis-tls-cert", files["cert"]!, "--redis-tls-key", files["key"]!])
            .resolve(.none, environment: [:]).address.value.tls
        #expect(mutual == .init(caFile: nil, certificateFile: files["cert"], keyFile: files["key"]))

        let plain = errorText { _ = try RedisOptions.parse(["--redis", "h:1", "--redis-tls-ca", files["flag-ca"]!]).resolve(.none, environment: [:]) }
        #expect(plain.contains("not rediss://"), "\(plain)")
        let unreadable = errorText { _ = try RedisOptions.parse(["--redis", "rediss://h:1", "--redis-tls-ca", dir.appendingPathComponent("nope").path]).resolve(.none, environment: [:]) }
        #expect(unreadable.contains("cannot read the Redis TLS file"), "\(unreadable)")
        let half = errorText { _ = try RedisOptions.parse(["--redis", "rediss://h:1", "--redis-tls-cert", files["cert"]!]).resolve(.none, environment: [:]) }
        #expect(half.contains("--redis-tls-key"), "\(half)")
        let typo = errorText { _ = try RedisOptions.parse([]).resolve(try SettingsFile.parse("redis: {password: x}", path: "t.yaml"), environment: [:]) }
        #expect(typo.contains("password_file"), "\(typo)")
    }
}

@Suite("shared options: --kafka-config")
struct KafkaConfigFileTests {
    @Test("key=value lines, comments and blank lines; -X > --kafka-config > settings file")
    func precedence() throws {
        let dir = try temporaryTestDirectory("kafkaconfig")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("client.properties").path
        try """
            # librdkafka client properties
            security.protocol = SASL_SSL

            sasl.mechanisms=PLAIN
              sasl.password=p=w#1
            linger.ms=9
            """.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try KafkaPropertyOptions.readKafkaConfig(path)
                == ["security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN", "sasl.password": "p=w#1", "linger.ms": "9"])
        let settings = try SettingsFile.parse("kafka: {client: {security.protocol: SSL, client.id: from-settings}, producer: {linger.ms: 5}}", path: "k.yaml")
        let p = try KafkaOptions.parse(["--kafka-config", path, "-X", "linger.ms=1"]).resolve(settings, role: .producer, environment: [:]).properties
        #expect(p == ["security.protocol": "SASL_SSL", "client.id": "from-settings", "sasl.mechanisms": "PLAIN", "sasl.password": "p=w#1", "linger.ms": "1"])
        #expect(try KafkaPropertyOptions.parse(["--kafka-config", path, "-X", "a=b"]).arguments == ["--kafka-config", path, "-X", "a=b"])

        // bootstrap.servers in the file counts as a flag, after --bootstrap and -X.
        try "bootstrap.servers=file-broker:9092\n".write(toFile: path, atomically: true, encoding: .utf8)
        let env = ["STREAMREC_BOOTSTRAP": "env-broker:9092"]
        #expect(try KafkaOptions.parse(["--kafka-config", path]).resolve(.none, role: .consumer, environment: env).bootstrap.value == "file-broker:9092")
        #expect(try KafkaOptions.parse(["--kafka-config", path, "--bootstrap", "flag:1"]).resolve(.none, role: .consumer, environment: env).bootstrap.value == "flag:1")
    }

    @Test("a malformed line is an error with FILE:LINE that does not echo the line; a missing file says so")
    func malformed() throws {
        let dir = try temporaryTestDirectory("kafkaconfigbad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("bad.properties").path
        for (text, line) in [("a=1\nsasl.password hunter2\n", 2), ("# c\n=value-hunter2\n", 2), ("two words=hunter2\n", 1)] {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let e = errorText { _ = try KafkaPropertyOptions.readKafkaConfig(path) }
            #expect(e.contains("\(path):\(line):") && e.contains("key=value") && !e.contains("hunter2"), "\(e)")
            #expect(throws: (any Error).self) { try KafkaOptions.parse(["--kafka-config", path]) }
        }
        let missing = errorText { _ = try KafkaPropertyOptions.readKafkaConfig(dir.appendingPathComponent("nope").path) }
        #expect(missing.contains("cannot read the Kafka config file"), "\(missing)")
    }
}
