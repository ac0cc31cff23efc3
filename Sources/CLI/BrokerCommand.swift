import Logging
import ArgumentParser
import Foundation
import Streaming

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

        Topics: --topic NAME --partitions P (repeatable, pairwise) plus kafka.topics of --config \
        (default configs/cluster.yaml); the broker count: --brokers, kafka.brokers, 3. Create every topic up front: the mock auto-creates any \
        other topic a client names, with 4 partitions, whatever allow.auto.create.topics says.
        """)

    @OptionGroup var settings: SettingsOptions
    @OptionGroup(title: "Logging") var logging: LogOptions

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
        let logger = try logging.start("broker", tag: "broker:")
        let signals = ShutdownSignals.install()
        // Tearing the mock cluster down closes client connections; it must not hold the exit.
        signals.exitUnlessStopped(within: .seconds(10), what: "broker")
        let cluster = try settings.load().kafka()
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
        logger.info(.init(stringLiteral: "\(brokerCount) in-memory mock brokers on \(mock.bootstrapServers) (≤ ~5 MiB kept per partition); "
             + "topics: \(topics.map { "\($0.0)[\($0.1)]" }.joined(separator: ", ")); stop with SIGINT/SIGTERM (pid \(getpid()))"))

        let sig = signals.wait()!
        logger.info("\(ShutdownSignals.name(of: sig)) received, shutting down")
    }

    private func writeAtomically(_ text: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        try Data(text.utf8).write(to: tmp)
        if rename(tmp.path, url.path) != 0 { throw CLIError("rename \(tmp.path) → \(path): errno \(errno)") }
    }
}
