import Logging
import ArgumentParser
import Features
import Foundation
import Streaming

/// What `produce --data` holds; it sets the default key and topic.
enum ProduceFormat: String, ExpressibleByArgument, CaseIterable {
    /// Criteo TSV rows: keyed by the hash of the whole row.
    case criteo
    /// Tianchi behaviour CSV `user,item,behavior,time` (headerless): keyed by the user, so one
    /// user's events stay in one partition in file order.
    case behavior
    /// Any text, one row per line: keyed by the whole row unless --key-field says otherwise.
    case lines

    /// The key field (1-based) and separator the format implies; nil: the whole row.
    var keyField: (field: Int, separator: String)? { self == .behavior ? (1, "comma") : nil }

    /// The topic when --topic is not given (configs/cluster.yaml creates both).
    var defaultTopic: String { self == .behavior ? "behavior" : "criteo" }
}

struct Produce: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a file's rows to a Kafka topic, one row per message, each row to a fixed partition.",
        discussion: """
        Every line of --data is one message, sent as-is without its trailing newline: nothing is \
        parsed, validated or skipped (the first line is data; malformed lines are produced too — \
        `featurize` dead-letters them). Lines longer than --max-line-bytes are truncated and counted.

        Key and partition: by default the key is the 8-byte big-endian FNV-1a-64 hash of the row; \
        with --key-field N the key is field N itself (e.g. a user id). The partition is the \
        FNV-1a-64 hash of the key bytes (row or field) modulo the topic's partition count, chosen \
        by streamrec (not librdkafka's partitioner), so the same row — or the same user — always \
        lands in the same partition of a topic of P partitions, in file order. \
        --format behavior (Tianchi `user,item,behavior,time` CSV) means --key-field 1 \
        --field-separator comma: one event per message, keyed by the user; a different \
        --key-field or --field-separator with it is an error. --format criteo (the default) and \
        --format lines key by the whole row.

        librdkafka does the batching and compression: linger.ms=5, batch.num.messages=10000, \
        compression.type=lz4, enable.idempotence=true, allow.auto.create.topics=false unless \
        the settings file (kafka.client, kafka.producer) or -X says otherwise. -X passes any \
        librdkafka property through unchanged (SASL/SSL too).

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

    @Option(help: ArgumentHelp("What --data holds: criteo (TSV, keyed by the whole row), behavior (Tianchi "
                               + "user,item,behavior,time CSV, keyed by the user), lines (any text, keyed by the whole row).",
                               valueName: "criteo|behavior|lines"))
    var format: ProduceFormat = .criteo

    @Option(help: "Kafka topic (must exist unless -X allow.auto.create.topics=true). Default: criteo; behavior with --format behavior.")
    var topic: String?

    @OptionGroup var settings: SettingsOptions

    @OptionGroup(title: "Kafka") var kafka: KafkaOptions
    @OptionGroup(title: "Logging") var logging: LogOptions

    @Option(help: ArgumentHelp("Rows per second (token bucket); default: as fast as possible.", valueName: "ROWS_PER_S"))
    var rate: Double?

    @Option(help: "The topic's partition count; default: ask the broker (metadata).")
    var partitions: Int?

    @Option(help: "Key each row by this field (1-based) instead of the whole row; the key is the field itself. Default: 1 with --format behavior.")
    var keyField: Int?

    @Option(help: "Field separator for --key-field: 'tab', 'comma', or one character. Default: tab; comma with --format behavior.")
    var fieldSeparator: String?

    @Option(help: "Longer lines are truncated to this many bytes (Kafka's message.max.bytes is ~1 MB).")
    var maxLineBytes: Int = 900_000

    @Option(help: "Seconds to wait for outstanding deliveries at the end.")
    var flushTimeout: Double = 60

    func validate() throws {
        if let rate, !(rate > 0) { throw ValidationError("--rate must be positive") }
        if let partitions, partitions <= 0 { throw ValidationError("--partitions must be positive") }
        if let keyField, keyField < 1 { throw ValidationError("--key-field is 1-based") }
        if maxLineBytes < 1 { throw ValidationError("--max-line-bytes must be positive") }
        _ = try keying()
    }

    /// The message key: --format's, unless --key-field/--field-separator say otherwise; a
    /// contradiction of the format is an error rather than a silent choice.
    func keying() throws -> RowKeying {
        let implied = format.keyField
        if let implied {
            if let keyField, keyField != implied.field {
                throw ValidationError("--format \(format.rawValue) keys by field \(implied.field) (the user); it cannot be combined with "
                                      + "--key-field \(keyField). Use --format lines --key-field \(keyField) --field-separator \(implied.separator) for another key.")
            }
            if let fieldSeparator, try Self.separatorByte(fieldSeparator) != Self.separatorByte(implied.separator) {
                throw ValidationError("--format \(format.rawValue) is \(implied.separator)-separated; drop --field-separator \(fieldSeparator) "
                                      + "or use --format lines")
            }
        }
        guard let field = keyField ?? implied?.field else { return .wholeRow }
        return .field(index: field - 1, separator: try Self.separatorByte(fieldSeparator ?? implied?.separator ?? "tab"))
    }

    private static func separatorByte(_ name: String) throws -> UInt8 {
        switch name {
        case "tab", "\\t", "\t": return 0x09
        case "comma", ",": return 0x2C
        default:
            guard name.utf8.count == 1 else { throw ValidationError("--field-separator must be one byte, 'tab' or 'comma'") }
            return name.utf8.first!
        }
    }

    func run() throws {
        let logger = try logging.start("produce", tag: "produce:")
        let signals = ShutdownSignals.install()
        signals.exitUnlessStopped(within: .seconds(20), what: "produce")
        let kafkaSettings = try kafka.resolve(settings.load(), role: .producer)
        let config = kafkaSettings.config, bootstrap = kafkaSettings.bootstrap.description
        let topic = self.topic ?? format.defaultTopic
        let keying = try keying()
        let reader = try LineReader(path: data, maxLineLength: maxLineBytes - 3)

        let producer: RowProducer
        do {
            producer = try RowProducer(config: config, topic: topic, partitions: partitions, keying: keying, rate: rate)
        } catch {
            throw CLIError("produce: cannot start producing to '\(topic)' on \(bootstrap): \(error.message)")
        }
        // A full librdkafka queue (broker unreachable) makes a send wait; a signal ends the wait.
        producer.giveUp = { signals.isRaised }
        logger.info(.init(stringLiteral: "\(data) → topic \(topic) (\(producer.partitions) partitions) on \(bootstrap)"
            + (rate.map { String(format: ", at most %.0f rows/s", $0) } ?? "")))

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
        let summary = producer.finish(timeout: .seconds(flushWait))
        var extra: [String: String] = ["truncated_lines": "\(truncated)"]
        if let stoppedBy { extra["interrupted"] = "\"\(ShutdownSignals.name(of: stoppedBy))\"" }
        FileHandle.standardOutput.write(Data((summary.jsonLine(topic: topic, extra: extra) + "\n").utf8))

        if truncated > 0 {
            logger.warning("\(truncated) lines longer than \(maxLineBytes) bytes were truncated")
        }
        if let stoppedBy {
            let name = ShutdownSignals.name(of: stoppedBy)
            if summary.ok {
                logger.info("\(name): stopped after \(summary.rows) rows, all delivered")
            } else {
                logger.info(.init(stringLiteral: "\(name): stopped after \(summary.rows) rows; \(summary.delivered) delivered, "
                            + "\(summary.failed + summary.undelivered) NOT acknowledged by the broker at \(bootstrap) within \(Int(flushWait)) s "
                            + "(unreachable?) and dropped — produce those rows again"))
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
        logger.info(.init(stringLiteral: String(format: "%d rows (%d bytes) delivered in %.2f s, %.0f rows/s",
                   summary.rows, summary.bytes, summary.seconds, summary.rowsPerSecond)))
    }
}
