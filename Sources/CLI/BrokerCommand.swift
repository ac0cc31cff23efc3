import ArgumentParser
import Foundation
import Streaming
import Yams

struct Broker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a development Kafka cluster (librdkafka's in-memory mock brokers) until SIGINT/SIGTERM.",
        discussion: """
        Starts --brokers mock brokers in this process (rd_kafka_mock_cluster_new). They speak the \
        real Kafka protocol, so any client (streamrec, kcat, confluent-kafka) can use them, but \
        they are IN MEMORY ONLY: nothing survives the process, and each partition keeps at most \
        ~5 MiB (older messages are dropped, like Kafka's retention — about 70,000 Criteo rows \
        across 4 partitions). Use enough partitions, or consume while producing. For production, \
        point --bootstrap at a real Kafka cluster instead.

        The brokers listen on 127.0.0.1 only, on ports the OS picks (librdkafka 2.0's mock has no \
        port setting). The address is printed as a line `BOOTSTRAP 127.0.0.1:PORT,…` on stdout \
        and written to --bootstrap-file; on SIGINT/SIGTERM the cluster is destroyed and the \
        file removed.

        Topics: --topic NAME --partitions P (repeatable, pairwise) plus the `kafka.topics` of \
        --config (configs/cluster.yaml). Create every topic up front: the mock auto-creates any \
        other topic a client names, with 4 partitions, whatever allow.auto.create.topics says.
        """)

    @Option(help: "Cluster settings (YAML, `kafka:` section: brokers, topics); ignored if the file does not exist.")
    var config: String = "configs/cluster.yaml"

    @Option(help: "Number of mock brokers (default: kafka.brokers from --config, else 3).")
    var brokers: Int?

    @Option(help: "A topic to create (repeatable; pairs with --partitions in order).")
    var topic: [String] = []

    @Option(help: "Partitions of each --topic (one per --topic, or one for all).")
    var partitions: [Int] = []

    @Option(help: "Write the bootstrap servers to this file (removed on exit).")
    var bootstrapFile: String?

    func validate() throws {
        if let brokers, brokers < 1 { throw ValidationError("--brokers must be at least 1") }
        if partitions.contains(where: { $0 < 1 }) { throw ValidationError("--partitions must be positive") }
        if !(partitions.isEmpty || partitions.count == 1 || partitions.count == topic.count) {
            throw ValidationError("give one --partitions per --topic, or a single --partitions for all")
        }
        if !partitions.isEmpty && topic.isEmpty { throw ValidationError("--partitions needs --topic") }
    }

    func run() throws {
        let signals = ShutdownSignals.install()
        // Tearing the mock cluster down closes client connections; it must not hold the exit.
        signals.exitUnlessStopped(within: .seconds(10), what: "broker")
        let cluster = FileManager.default.fileExists(atPath: config) ? try KafkaClusterConfig.load(path: config) : KafkaClusterConfig()
        var topics: [(String, Int)] = cluster.topics.map { ($0.name, $0.partitions) }
        for (i, name) in topic.enumerated() {
            let p = partitions.isEmpty ? 4 : (partitions.count == 1 ? partitions[0] : partitions[i])
            topics.removeAll { $0.0 == name }
            topics.append((name, p))
        }
        let brokerCount = brokers ?? cluster.brokers ?? 3

        let mock: MockKafkaCluster
        do {
            mock = try MockKafkaCluster(brokers: brokerCount)
            for (name, p) in topics { try mock.createTopic(name, partitions: p, replicationFactor: min(brokerCount, 3)) }
        } catch {
            throw CLIError("broker: \(error)")
        }
        defer { mock.destroy() }

        if let bootstrapFile {
            do { try writeAtomically(mock.bootstrapServers + "\n", to: bootstrapFile) } catch {
                throw CLIError("broker: cannot write --bootstrap-file \(bootstrapFile): \(error.localizedDescription)")
            }
        }
        defer { if let bootstrapFile { try? FileManager.default.removeItem(atPath: bootstrapFile) } }

        var banner = "BOOTSTRAP \(mock.bootstrapServers)\n"
        for (name, p) in topics { banner += "TOPIC \(name) \(p)\n" }
        FileHandle.standardOutput.write(Data(banner.utf8))
        note("broker: \(brokerCount) in-memory mock brokers on \(mock.bootstrapServers) (≤ ~5 MiB kept per partition); "
             + "topics: \(topics.map { "\($0.0)[\($0.1)]" }.joined(separator: ", ")); stop with SIGINT/SIGTERM (pid \(getpid()))")

        let sig = signals.wait()!
        note("broker: \(ShutdownSignals.name(of: sig)) received, shutting down")
    }

    private func writeAtomically(_ text: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        try Data(text.utf8).write(to: tmp)
        if rename(tmp.path, url.path) != 0 { throw CLIError("rename \(tmp.path) → \(path): errno \(errno)") }
    }
}

fileprivate func note(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

// MARK: - The `kafka:` section of configs/cluster.yaml

/// ```yaml
/// kafka:
///   bootstrap: ""            # empty: the local broker's bootstrap file
///   brokers: 3               # streamrec broker
///   topics:
///     - {name: criteo, partitions: 8}
///   client: {}               # librdkafka properties for every client (SASL/SSL …)
///   producer: {linger.ms: 5} # producer-only properties
///   consumer: {}             # consumer-only properties
/// ```
struct KafkaClusterConfig {
    struct Topic { var name: String; var partitions: Int }
    var bootstrap: String? = nil
    var brokers: Int? = nil
    var topics: [Topic] = []
    var client: [String: String] = [:]
    var producer: [String: String] = [:]
    var consumer: [String: String] = [:]

    static func load(path: String) throws -> KafkaClusterConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw CLIError("cannot read config file \(path): \(error.localizedDescription)")
        }
        guard let root = try Yams.load(yaml: text) as? [String: Any] else {
            throw CLIError("config file \(path) is not a YAML mapping")
        }
        var out = KafkaClusterConfig()
        guard let kafka = root["kafka"] as? [String: Any] else { return out }
        if let b = kafka["bootstrap"] { out.bootstrap = "\(b)" }
        if let n = kafka["brokers"] {
            guard let n = n as? Int, n > 0 else { throw CLIError("\(path): kafka.brokers must be a positive integer") }
            out.brokers = n
        }
        for t in kafka["topics"] as? [Any] ?? [] {
            guard let t = t as? [String: Any], let name = t["name"] as? String,
                  let p = t["partitions"] as? Int, p > 0 else {
                throw CLIError("\(path): each kafka.topics entry needs name and partitions > 0")
            }
            out.topics.append(Topic(name: name, partitions: p))
        }
        func props(_ key: String) -> [String: String] {
            (kafka[key] as? [String: Any] ?? [:]).mapValues { v in (v as? Bool).map { $0 ? "true" : "false" } ?? "\(v)" }
        }
        out.client = props("client")
        out.producer = props("producer")
        out.consumer = props("consumer")
        return out
    }
}
