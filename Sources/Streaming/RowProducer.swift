// Streaming/RowProducer: raw text rows → Kafka, one row per message, deterministic partitions.
//
// Purpose and limits
//   * A row is sent as-is: its bytes without the trailing "\n" (a "\r" before it is kept). Nothing
//     is parsed, validated or skipped — the first line is data, an empty or malformed line is a
//     message too (featurize validates and dead-letters).
//   * Key: the 8-byte big-endian FNV-1a-64 hash of the whole row by default, or one field itself
//     (`RowKeying.field`, e.g. a user id: any consumer can read the key). Partition: FNV-1a-64 of
//     the key bytes (the row, or the field) `% partitions`, chosen here (explicit partition, not
//     librdkafka's partitioner), so the same row — or the same user — always lands in the same
//     partition for a given partition count, from any producer, in the order it was sent.
//   * Optional rate limit (`TokenBucket`, rows/s) to simulate live traffic.
//   * Delivery reports are counted (`KafkaDeliveryStats`); `finish` flushes and returns the
//     totals; the caller decides that any failure is an error. After the first failed delivery
//     `failed` becomes true so a caller can stop reading early.
//
// Threading rule
//   One thread calls `send`/`finish`. Delivery reports are served on that thread (`poll`).

import Foundation

// MARK: - Keys and partitions

/// How a row's message key is derived.
public enum RowKeying: Sendable, Equatable {
    /// Hash of the whole row (without the line terminator).
    case wholeRow
    /// Field `index` (0-based) split by `separator`: the message key is the field, the partition its
    /// hash; a missing field is an empty key.
    case field(index: Int, separator: UInt8)
}

public enum RowPartitioning {
    /// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
    @inline(__always)
    public static func fnv1a64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    public static func fnv1a64(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { fnv1a64($0) } }

    /// The bytes `keying` selects from `row` (a sub-buffer of it).
    public static func keyBytes(_ row: UnsafeRawBufferPointer, _ keying: RowKeying) -> UnsafeRawBufferPointer {
        switch keying {
        case .wholeRow:
            return row
        case let .field(index, separator):
            var field = 0, start = 0
            for i in 0 ..< row.count where row[i] == separator {
                if field == index { return UnsafeRawBufferPointer(rebasing: row[start ..< i]) }
                field += 1
                start = i + 1
            }
            return field == index ? UnsafeRawBufferPointer(rebasing: row[start ..< row.count])
                                  : UnsafeRawBufferPointer(start: nil, count: 0)
        }
    }

    /// Partition of a key hash: `hash % partitions`.
    @inline(__always)
    public static func partition(hash: UInt64, partitions: Int) -> Int32 {
        Int32(truncatingIfNeeded: hash % UInt64(partitions))
    }

    /// Partition of a row (terminator already stripped).
    public static func partition(row: UnsafeRawBufferPointer, keying: RowKeying = .wholeRow, partitions: Int) -> Int32 {
        partition(hash: fnv1a64(keyBytes(row, keying)), partitions: partitions)
    }

    /// Convenience for tests: partition of a row given as bytes (a trailing "\n" is stripped).
    public static func partition(row: [UInt8], keying: RowKeying = .wholeRow, partitions: Int) -> Int32 {
        row.withUnsafeBytes { partition(row: stripNewline($0), keying: keying, partitions: partitions) }
    }

    /// `line` without one trailing "\n".
    @inline(__always)
    public static func stripNewline(_ line: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        if let last = line.last, last == 0x0A { return UnsafeRawBufferPointer(rebasing: line.dropLast()) }
        return line
    }
}

// MARK: - Rate limit

/// A token bucket: `rate` tokens per second, at most `burst` stored. A value type driven by the
/// caller's clock, so tests can step it.
public struct TokenBucket: Sendable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    /// The bucket starts full. `burst` defaults to 1/100 s worth of tokens (at least 1).
    public init(rate: Double, burst: Double? = nil, now: ContinuousClock.Instant = .now) {
        precondition(rate > 0, "rate must be positive")
        self.rate = rate
        self.burst = max(1, burst ?? rate / 100)
        self.tokens = self.burst
        self.last = now
    }

    /// Takes one token; returns how long to wait first (zero when a token is available).
    /// The token is taken either way (the caller waits, then proceeds).
    public mutating func take(now: ContinuousClock.Instant = .now) -> Duration {
        let elapsed = now - last
        last = now
        let secs = elapsed.seconds
        tokens = min(burst, tokens + secs * rate)
        tokens -= 1
        if tokens >= 0 { return .zero }
        return .nanoseconds(Int64((-tokens / rate) * 1e9))
    }
}

// MARK: - Producer

/// Totals of one `RowProducer` run.
public struct RowProduceSummary: Sendable, Equatable {
    public var rows: Int = 0
    /// Payload bytes sent (rows without terminators).
    public var bytes: Int = 0
    public var seconds: Double = 0
    public var delivered: Int = 0
    public var failed: Int = 0
    /// Messages still unacknowledged when the flush timed out (counted as not delivered).
    public var undelivered: Int = 0
    public var firstError: KafkaError? = nil
    public var partitions: Int = 0
    public var rowsPerSecond: Double { seconds > 0 ? Double(rows) / seconds : 0 }
    /// Every produced row was acknowledged by the broker.
    public var ok: Bool { failed == 0 && undelivered == 0 && delivered == rows }

    /// One JSON line (stable field names; scripts parse it).
    public func jsonLine(topic: String, extra: [String: String] = [:]) -> String {
        var fields: [(String, String)] = [
            ("topic", "\"\(topic)\""), ("partitions", "\(partitions)"), ("rows", "\(rows)"), ("bytes", "\(bytes)"),
            ("seconds", String(format: "%.3f", seconds)), ("rows_per_s", String(format: "%.0f", rowsPerSecond)),
            ("delivered", "\(delivered)"), ("failed_deliveries", "\(failed)"), ("undelivered", "\(undelivered)"),
        ]
        if let firstError { fields.append(("first_error", jsonString(firstError.message))) }
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) { fields.append((k, v)) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }
}

func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

/// Sends raw rows to one topic; see the file header.
public final class RowProducer {
    /// librdkafka settings used unless the caller's config sets them.
    public static let defaultProperties: [String: String] = [
        "linger.ms": "5",
        "batch.num.messages": "10000",
        "compression.type": "lz4",
        "queue.buffering.max.messages": "200000",
        // Retries never duplicate or reorder a partition's rows.
        "enable.idempotence": "true",
        // A missing topic is an error on a real Kafka cluster, not a silently auto-created one with
        // the wrong partition count. (librdkafka 2.0's mock broker auto-creates it regardless,
        // with 4 partitions: create topics with `streamrec broker --topic`.)
        "allow.auto.create.topics": "false",
    ]

    public let topic: String
    public let partitions: Int
    public let keying: RowKeying
    private let producer: KafkaProducer
    private var bucket: TokenBucket?
    private var summary = RowProduceSummary()
    private let start = ContinuousClock.now
    private var sincePoll = 0
    /// Asked while a send waits for queue space (broker unreachable): true makes `send` throw
    /// `KafkaError.interrupted` (e.g. after SIGTERM).
    public var giveUp: (() -> Bool)? = nil

    /// - Parameters:
    ///   - partitions: the topic's partition count; nil asks the broker (metadata), which fails if
    ///     the topic does not exist.
    ///   - rate: rows per second, nil for as fast as possible.
    public init(config: KafkaConfig, topic: String, partitions: Int? = nil, keying: RowKeying = .wholeRow,
                rate: Double? = nil, metadataTimeout: Duration = .seconds(10)) throws(KafkaError) {
        var config = config
        for (k, v) in Self.defaultProperties where config[k] == nil { config[k] = v }
        let producer = try KafkaProducer(config: config)
        let count: Int
        if let partitions {
            count = partitions
        } else {
            do {
                count = try producer.partitionCount(topic: topic, timeout: metadataTimeout)
            } catch {
                if error.code == 3 /* UNKNOWN_TOPIC_OR_PART */ {
                    throw KafkaError("metadata", code: error.code, message:
                        "topic '\(topic)' does not exist on \(config["bootstrap.servers"] ?? "the broker"); create it "
                        + "(e.g. streamrec broker --topic \(topic) --partitions P) or pass -X allow.auto.create.topics=true")
                }
                throw KafkaError(error.operation, code: error.code, message:
                    "\(error.message) — is a broker listening on \(config["bootstrap.servers"] ?? "?")?")
            }
        }
        guard count > 0 else { throw KafkaError("metadata", message: "topic '\(topic)' has no partitions") }
        self.producer = producer
        self.topic = topic
        self.partitions = count
        self.keying = keying
        self.bucket = rate.map { TokenBucket(rate: $0) }
        summary.partitions = count
    }

    /// True once any delivery has failed.
    public var failed: Bool { producer.deliveryStats.failed > 0 }

    /// Rows sent so far.
    public var rows: Int { summary.rows }

    /// Sends one row. `line` may end in "\n" (stripped). Waits for the rate limit if one is set.
    @inline(__always)
    public func send(line: UnsafeRawBufferPointer) throws(KafkaError) {
        if bucket != nil {
            let wait = bucket!.take()
            if wait > .zero { Thread.sleep(forTimeInterval: wait.seconds) }
        }
        let row = RowPartitioning.stripNewline(line)
        let keyBytes = RowPartitioning.keyBytes(row, keying)
        let hash = RowPartitioning.fnv1a64(keyBytes)
        let partition = RowPartitioning.partition(hash: hash, partitions: partitions)
        switch keying {
        case .field:
            try producer.produce(topic: topic, partition: partition, key: keyBytes, value: row, giveUp: giveUp)
        case .wholeRow:
            var keyBE = hash.bigEndian
            try withUnsafeBytes(of: &keyBE) { (key) throws(KafkaError) in
                try producer.produce(topic: topic, partition: partition, key: key, value: row, giveUp: giveUp)
            }
        }
        summary.rows += 1
        summary.bytes += row.count
        sincePoll += 1
        if sincePoll >= 1024 { sincePoll = 0; producer.poll() }
    }

    /// Convenience for tests.
    public func send(_ line: [UInt8]) throws(KafkaError) {
        var failure: KafkaError? = nil
        line.withUnsafeBytes { b in
            do throws(KafkaError) { try send(line: b) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Flushes (waits up to `timeout` for every outstanding delivery report) and returns the totals.
    /// Does not throw for failed deliveries: check `summary.ok`.
    /// Messages still unacknowledged then are purged (reported as failed deliveries), so closing
    /// the producer does not wait for an unreachable broker.
    public func finish(timeout: Duration = .seconds(60)) -> RowProduceSummary {
        do { try producer.flush(timeout: timeout) } catch {}
        producer.poll()
        var s = summary
        // Counted before the purge turns them into failures: the summary tells unacknowledged apart.
        let before = producer.deliveryStats
        s.undelivered = max(0, s.rows - before.succeeded - before.failed)
        if s.undelivered > 0 { producer.purge() }
        let stats = producer.deliveryStats
        s.delivered = stats.succeeded
        s.failed = before.failed
        s.firstError = before.firstError
        if s.undelivered > 0 && s.firstError == nil {
            s.firstError = KafkaError("flush", message: "\(s.undelivered) messages still unacknowledged after \(timeout)")
        }
        let elapsed = ContinuousClock.now - start
        s.seconds = elapsed.seconds
        return s
    }
}
