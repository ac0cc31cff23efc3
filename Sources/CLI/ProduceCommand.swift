import ArgumentParser
import Features
import Foundation
import Streaming

struct Produce: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a file's rows to a Kafka topic, one row per message, each row to a fixed partition.",
        discussion: """
        Every line of --data is one message, sent as-is without its trailing newline: nothing is \
        parsed, validated or skipped (the first line is data; malformed lines are produced too — \
        `featurize` dead-letters them). Lines longer than --max-line-bytes are truncated and counted.

        Key and partition: the key is the 8-byte big-endian FNV-1a-64 hash of the row (or of \
        field --key-field, e.g. a user id in behaviour CSVs), and the partition is that hash \
        modulo the topic's partition count, chosen by streamrec (not librdkafka's partitioner). \
        The same row therefore always lands in the same partition of a topic of P partitions.

        librdkafka does the batching and compression: linger.ms=5, batch.num.messages=10000, \
        compression.type=lz4, enable.idempotence=true, allow.auto.create.topics=false unless \
        configs/cluster.yaml (kafka.producer) or -X says otherwise. -X passes any librdkafka \
        property through unchanged (SASL/SSL too).

        Every delivery report is checked: if any message fails (or is still unacknowledged after \
        --flush-timeout) the command stops reading, flushes, prints the summary and exits with \
        status 1 naming the first error. SIGINT/SIGTERM stop reading, flush what was produced \
        (waiting at most 5 s: rows the broker has not acknowledged by then — it may be \
        unreachable — are dropped and counted as undelivered), print the summary and exit with \
        128+signal; a second signal exits at once. The last stdout line is a JSON summary: \
        rows, bytes, seconds, rows_per_s, delivered, failed_deliveries.
        """)

    @Option(help: "Input file: Criteo TSV, behaviour CSV, any text with one row per line.")
    var data: String

    @Option(help: "Kafka topic (must exist unless -X allow.auto.create.topics=true).")
    var topic: String = "criteo"

    @OptionGroup var kafka: KafkaClientOptions

    @Option(help: ArgumentHelp("Rows per second (token bucket); default: as fast as possible.", valueName: "ROWS_PER_S"))
    var rate: Double?

    @Option(help: "The topic's partition count; default: ask the broker (metadata).")
    var partitions: Int?

    @Option(help: "Key each row by this field (1-based) instead of the whole row.")
    var keyField: Int?

    @Option(help: "Field separator for --key-field: 'tab', 'comma', or one character.")
    var fieldSeparator: String = "tab"

    @Option(help: "Longer lines are truncated to this many bytes (Kafka's message.max.bytes is ~1 MB).")
    var maxLineBytes: Int = 900_000

    @Option(help: "Seconds to wait for outstanding deliveries at the end.")
    var flushTimeout: Double = 60

    func validate() throws {
        if let rate, !(rate > 0) { throw ValidationError("--rate must be positive") }
        if let partitions, partitions <= 0 { throw ValidationError("--partitions must be positive") }
        if let keyField, keyField < 1 { throw ValidationError("--key-field is 1-based") }
        if maxLineBytes < 1 { throw ValidationError("--max-line-bytes must be positive") }
        _ = try separatorByte()
    }

    private func separatorByte() throws -> UInt8 {
        switch fieldSeparator {
        case "tab", "\\t", "\t": return 0x09
        case "comma", ",": return 0x2C
        default:
            guard fieldSeparator.utf8.count == 1 else { throw ValidationError("--field-separator must be one byte, 'tab' or 'comma'") }
            return fieldSeparator.utf8.first!
        }
    }

    func run() throws {
        let signals = ShutdownSignals.install()
        signals.exitUnlessStopped(within: .seconds(20), what: "produce")
        let (config, bootstrap) = try kafka.producerConfig()
        let keying: RowKeying = try keyField.map { .field(index: $0 - 1, separator: try separatorByte()) } ?? .wholeRow
        let reader = try LineReader(path: data, maxLineLength: maxLineBytes - 3)

        let producer: RowProducer
        do {
            producer = try RowProducer(config: config, topic: topic, partitions: partitions, keying: keying, rate: rate)
        } catch {
            throw CLIError("produce: cannot start producing to '\(topic)' on \(bootstrap): \(error.message)")
        }
        // A full librdkafka queue (broker unreachable) makes a send wait; a signal ends the wait.
        producer.giveUp = { signals.isRaised }
        produceNote("produce: \(data) → topic \(topic) (\(producer.partitions) partitions) on \(bootstrap)"
            + (rate.map { String(format: ", at most %.0f rows/s", $0) } ?? ""))

        struct Stop: Error {}
        let progress = Progress(label: "produce", total: reader.fileSize)
        var truncated = 0
        var stoppedBy: Int32? = nil
        var stoppedOnFailure = false
        var sendError: KafkaError? = nil
        do {
            try reader.forEachLine(progress: { progress.update($0) }) { line, _ in
                if line.count >= maxLineBytes && line.last != 0x0A { truncated += 1 }
                if let s = signals.received { stoppedBy = s; throw Stop() }
                do throws(KafkaError) { try producer.send(line: line) } catch {
                    if error.isInterrupted, let s = signals.received { stoppedBy = s; throw Stop() }
                    sendError = error; throw Stop()
                }
                if producer.rows & 0x3FF == 0 && producer.failed { stoppedOnFailure = true; throw Stop() }
            }
        } catch is Stop {}
        progress.finish(reader.fileSize ?? 0)

        // After a signal the flush is bounded: the user asked to stop, and the broker may be gone.
        let flushWait = stoppedBy == nil ? flushTimeout : min(flushTimeout, 5)
        let summary = producer.finish(timeout: .milliseconds(Int64(flushWait * 1000)))
        var extra: [String: String] = ["truncated_lines": "\(truncated)"]
        if let stoppedBy { extra["interrupted"] = "\"\(ShutdownSignals.name(of: stoppedBy))\"" }
        FileHandle.standardOutput.write(Data((summary.jsonLine(topic: topic, extra: extra) + "\n").utf8))

        if truncated > 0 {
            produceNote("produce: warning: \(truncated) lines longer than \(maxLineBytes) bytes were truncated")
        }
        if let stoppedBy {
            let name = ShutdownSignals.name(of: stoppedBy)
            if summary.ok {
                produceNote("produce: \(name): stopped after \(summary.rows) rows, all delivered")
            } else {
                produceNote("produce: \(name): stopped after \(summary.rows) rows; \(summary.delivered) delivered, "
                            + "\(summary.failed + summary.undelivered) NOT acknowledged by the broker at \(bootstrap) within \(Int(flushWait)) s "
                            + "(unreachable?) and dropped — produce those rows again")
            }
            throw ExitCode(ShutdownSignals.exitStatus(for: stoppedBy))
        }
        if let sendError {
            throw CLIError("produce: could not enqueue row \(summary.rows + 1): \(sendError.message); "
                           + "\(summary.delivered) rows delivered, \(summary.failed) failed")
        }
        if !summary.ok {
            let reason = summary.firstError?.message ?? "unknown"
            throw CLIError("produce: \(summary.failed + summary.undelivered) of \(summary.rows) deliveries failed "
                           + "(first error: \(reason))" + (stoppedOnFailure ? "; stopped reading at the first failure" : "")
                           + ". Check that the broker at \(bootstrap) is up and the topic exists.")
        }
        produceNote(String(format: "produce: %d rows (%d bytes) delivered in %.2f s, %.0f rows/s",
                   summary.rows, summary.bytes, summary.seconds, summary.rowsPerSecond))
    }
}

fileprivate func produceNote(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

// MARK: - Kafka client options (shared by commands that talk to Kafka)

/// `--config`, `--bootstrap`, `--bootstrap-file`, `-X key=value`: where the brokers are and
/// librdkafka properties, passed through unchanged.
struct KafkaClientOptions: ParsableArguments {
    @Option(help: "Cluster settings (YAML, `kafka:` section); ignored if the file does not exist.")
    var config: String = "configs/cluster.yaml"

    @Option(help: ArgumentHelp("Kafka bootstrap servers.", valueName: "HOST:PORT[,HOST:PORT…]"))
    var bootstrap: String?

    @Option(help: "Read the bootstrap servers from this file (as written by `streamrec broker --bootstrap-file`).")
    var bootstrapFile: String?

    @Option(name: .customShort("X"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("A librdkafka property, passed through unchanged (repeatable).", valueName: "key=value"))
    var properties: [String] = []

    /// The default bootstrap file: `$STREAMREC_RUN_DIR/broker/bootstrap` (run dir default `runs/local`),
    /// where `cluster/up.sh` puts it.
    static var defaultBootstrapFile: String {
        let run = ProcessInfo.processInfo.environment["STREAMREC_RUN_DIR"] ?? "runs/local"
        return run + "/broker/bootstrap"
    }

    /// The cluster config file, if it exists.
    func clusterConfig() throws -> KafkaClusterConfig {
        FileManager.default.fileExists(atPath: config) ? try KafkaClusterConfig.load(path: config) : KafkaClusterConfig()
    }

    /// Bootstrap servers: --bootstrap, --bootstrap-file, $STREAMREC_BOOTSTRAP, the config's
    /// kafka.bootstrap, then the default bootstrap file.
    func resolveBootstrap(_ cluster: KafkaClusterConfig) throws -> String {
        if let bootstrap { return bootstrap }
        func readFile(_ path: String) throws -> String {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw CLIError("cannot read bootstrap file \(path); is `streamrec broker` (cluster/up.sh) running?")
            }
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if value.isEmpty { throw CLIError("bootstrap file \(path) is empty") }
            return value
        }
        if let bootstrapFile { return try readFile(bootstrapFile) }
        if let env = ProcessInfo.processInfo.environment["STREAMREC_BOOTSTRAP"], !env.isEmpty { return env }
        if let b = cluster.bootstrap, !b.isEmpty { return b }
        if FileManager.default.fileExists(atPath: Self.defaultBootstrapFile) { return try readFile(Self.defaultBootstrapFile) }
        throw CLIError("no Kafka bootstrap servers: pass --bootstrap HOST:PORT or --bootstrap-file FILE, "
                       + "or start the local broker with cluster/up.sh (writes \(Self.defaultBootstrapFile))")
    }

    /// -X properties as a dictionary.
    func overrides() throws -> [String: String] {
        var out: [String: String] = [:]
        for p in properties {
            guard let eq = p.firstIndex(of: "="), eq != p.startIndex else {
                throw ValidationError("-X expects key=value, got '\(p)'")
            }
            out[String(p[..<eq])] = String(p[p.index(after: eq)...])
        }
        return out
    }

    /// Producer config: config file's kafka.client and kafka.producer, then -X, then bootstrap.
    func producerConfig() throws -> (KafkaConfig, String) {
        let cluster = try clusterConfig()
        let ov = try overrides()
        let bootstrap = try ov["bootstrap.servers"] ?? resolveBootstrap(cluster)
        var props = cluster.client.merging(cluster.producer) { $1 }
        props.merge(ov) { $1 }
        props["bootstrap.servers"] = bootstrap
        return (KafkaConfig(props), bootstrap)
    }
}
