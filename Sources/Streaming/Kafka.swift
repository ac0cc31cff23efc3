// Streaming/Kafka: the one Swift funnel over librdkafka.
//
// Purpose and limits
//   * `KafkaConfig`: librdkafka properties passed through unchanged (so SASL/SSL, client ids,
//     timeouts, … all work exactly as documented by librdkafka).
//   * `KafkaProducer`: keyed produce to a topic (explicit partition or the configured
//     partitioner), delivery reports counted, flush with a timeout.
//   * `KafkaConsumer`: explicit partition assignment with start offsets (no group rebalancing),
//     batched poll, watermark offsets (to detect retention gaps), topic partition counts.
//   * `KafkaAdmin`: topic creation (partitions, per-topic configs such as `retention.bytes`) and
//     topic configs through the Kafka admin API, for brokers that do not auto-create what we need.
//   * `MockKafkaCluster`: librdkafka's in-process mock brokers, for tests and `streamrec broker`.
//   * Every librdkafka error code goes through `kafkaCheck`, which throws `KafkaError` with the
//     text from `rd_kafka_err2str`. C callbacks are `@convention(c)` functions that find their
//     Swift state through an `Unmanaged` opaque pointer; none of that leaves this file.
//
// Threading rule
//   librdkafka handles are thread-safe, and each wrapper serializes its own mutable Swift state
//   with a lock, so the classes are `@unchecked Sendable`. Still, give each `KafkaConsumer` one
//   owning task/thread: message order per partition is only meaningful to a single reader.
//   Delivery-report callbacks run on whichever thread calls `poll`/`flush` on the producer.

import CRdKafka
import Foundation

// MARK: - Errors

/// A librdkafka call failed. `code` is the `rd_kafka_resp_err_t` value (negative values are
/// librdkafka-internal errors such as `_TIMED_OUT`), `message` its `rd_kafka_err2str` text.
public struct KafkaError: Error, CustomStringConvertible, Sendable, Equatable {
    public let operation: String
    public let code: Int32
    public let message: String

    public var description: String { "Kafka error in \(operation): \(message) (code \(code))" }

    /// `RD_KAFKA_RESP_ERR__TIMED_OUT`.
    public var isTimeout: Bool { code == RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue }

    /// The caller asked to stop while a call was waiting (`giveUp` returned true).
    public static func interrupted(_ operation: String) -> KafkaError {
        KafkaError(operation, code: RD_KAFKA_RESP_ERR__INTR.rawValue, message: "interrupted (stopping)")
    }

    /// See `interrupted(_:)`.
    public var isInterrupted: Bool { code == RD_KAFKA_RESP_ERR__INTR.rawValue }

    init(_ operation: String, code: rd_kafka_resp_err_t) {
        self.operation = operation
        self.code = code.rawValue
        self.message = String(cString: rd_kafka_err2str(code))
    }

    init(_ operation: String, code: Int32 = -1, message: String) {
        self.operation = operation
        self.code = code
        self.message = message
    }
}

/// The funnel for calls that return `rd_kafka_resp_err_t`.
@inline(__always)
func kafkaCheck(_ err: rd_kafka_resp_err_t, _ operation: @autoclosure () -> String) throws(KafkaError) {
    if err == RD_KAFKA_RESP_ERR_NO_ERROR { return }
    throw KafkaError(operation(), code: err)
}

// MARK: - Configuration

/// librdkafka configuration properties, passed to `rd_kafka_conf_set` unchanged.
/// See librdkafka's CONFIGURATION.md for the names (`bootstrap.servers`,
/// `security.protocol`, `sasl.mechanisms`, `ssl.ca.location`, …).
public struct KafkaConfig: Sendable, Equatable {
    public var properties: [String: String]

    public init(_ properties: [String: String] = [:]) { self.properties = properties }

    public init(bootstrapServers: String, _ extra: [String: String] = [:]) {
        self.properties = extra
        self.properties["bootstrap.servers"] = bootstrapServers
    }

    public subscript(key: String) -> String? {
        get { properties[key] }
        set { properties[key] = newValue }
    }

    /// Properties whose values are secrets (sasl.password, ssl.key.password, ssl.keystore.password,
    /// sasl.oauthbearer.client.secret, ssl.key.pem …): never shown in messages.
    public static func isSecret(_ key: String) -> Bool {
        ["password", "secret", ".pem", "sasl.jaas.config", "sasl.oauthbearer.config"].contains { key.contains($0) }
    }

    /// Builds an `rd_kafka_conf_t`; the caller owns it (until `rd_kafka_new` takes it).
    func make(_ operation: String) throws(KafkaError) -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else { throw KafkaError(operation, message: "rd_kafka_conf_new failed") }
        rd_kafka_conf_set_log_cb(conf, kafkaLogCallback)  // through swift-log, outages summarised (KafkaLog)
        var errstr = [CChar](repeating: 0, count: 512)
        // Sorted so a failure is reported deterministically.
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            if rd_kafka_conf_set(conf, key, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                var message = cString(errstr)
                if Self.isSecret(key) && !value.isEmpty { message = message.replacingOccurrences(of: value, with: "***") }
                throw KafkaError(operation, code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, message: "property \(key): \(message)")
            }
        }
        return conf
    }
}

private func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Creates a client handle; takes ownership of `conf` on success, destroys it on failure.
private func newHandle(_ type: rd_kafka_type_t, _ conf: OpaquePointer, _ operation: String) throws(KafkaError) -> OpaquePointer {
    var errstr = [CChar](repeating: 0, count: 512)
    guard let rk = rd_kafka_new(type, conf, &errstr, errstr.count) else {
        rd_kafka_conf_destroy(conf)
        throw KafkaError(operation, message: cString(errstr))
    }
    return rk
}

private func milliseconds(_ d: Duration) -> Int32 {
    let (s, atto) = d.components
    let ms = s * 1000 + atto / 1_000_000_000_000_000
    return Int32(clamping: max(0, ms))
}

// MARK: - Shared pieces

/// Partition and offset constants.
public enum KafkaOffset {
    /// `RD_KAFKA_OFFSET_BEGINNING`: the earliest retained offset.
    public static let beginning: Int64 = -2
    /// `RD_KAFKA_OFFSET_END`: only messages produced after assignment.
    public static let end: Int64 = -1
}

/// Low (earliest retained) and high (next to be written) offsets of a partition.
/// A consumer whose next offset is below `low` has lost `low - next` messages to retention.
public struct KafkaWatermarks: Sendable, Equatable {
    public let low: Int64
    public let high: Int64
    public init(low: Int64, high: Int64) { self.low = low; self.high = high }
}

/// Topic metadata (`rd_kafka_metadata`). Defined on `KafkaClient` handles.
private func partitionCount(_ rk: OpaquePointer, topic: String, timeout: Duration) throws(KafkaError) -> Int {
    guard let rkt = rd_kafka_topic_new(rk, topic, nil) else {
        throw KafkaError("rd_kafka_topic_new(\(topic))", code: rd_kafka_last_error())
    }
    defer { rd_kafka_topic_destroy(rkt) }
    var md: UnsafePointer<rd_kafka_metadata>? = nil
    try kafkaCheck(rd_kafka_metadata(rk, 0, rkt, &md, milliseconds(timeout)), "rd_kafka_metadata(\(topic))")
    guard let md else { throw KafkaError("rd_kafka_metadata(\(topic))", message: "no metadata returned") }
    defer { rd_kafka_metadata_destroy(md) }
    for i in 0 ..< Int(md.pointee.topic_cnt) {
        let t = md.pointee.topics[i]
        guard String(cString: t.topic) == topic else { continue }
        try kafkaCheck(t.err, "metadata for topic \(topic)")
        return Int(t.partition_cnt)
    }
    throw KafkaError("rd_kafka_metadata(\(topic))", code: RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
}

private func watermarks(_ rk: OpaquePointer, topic: String, partition: Int32, timeout: Duration) throws(KafkaError) -> KafkaWatermarks {
    var low: Int64 = 0, high: Int64 = 0
    try kafkaCheck(rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, milliseconds(timeout)),
                   "rd_kafka_query_watermark_offsets(\(topic)/\(partition))")
    return KafkaWatermarks(low: low, high: high)
}

// MARK: - Producer

/// Outcome of one produced message, from librdkafka's delivery-report callback.
public struct KafkaDeliveryReport: Sendable {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    public let error: KafkaError?
}

/// Counts of delivery reports received so far.
public struct KafkaDeliveryStats: Sendable, Equatable {
    public var succeeded: Int = 0
    public var failed: Int = 0
    /// The first failure, if any (enough to tell the user what went wrong).
    public var firstError: KafkaError? = nil
}

/// Swift state reached from the C delivery callback through the opaque pointer.
private final class DeliveryState: @unchecked Sendable {
    let lock = NSLock()
    var stats = KafkaDeliveryStats()
    let onDelivery: (@Sendable (KafkaDeliveryReport) -> Void)?
    init(onDelivery: (@Sendable (KafkaDeliveryReport) -> Void)?) { self.onDelivery = onDelivery }
}

private let deliveryCallback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = { _, message, opaque in
    guard let message, let opaque else { return }
    let state = Unmanaged<DeliveryState>.fromOpaque(opaque).takeUnretainedValue()
    let m = message.pointee
    let error = m.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError("delivery", code: m.err)
    state.lock.lock()
    if let error {
        state.stats.failed += 1
        if state.stats.firstError == nil { state.stats.firstError = error }
    } else {
        state.stats.succeeded += 1
    }
    state.lock.unlock()
    if let onDelivery = state.onDelivery {
        let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        onDelivery(KafkaDeliveryReport(topic: topic, partition: m.partition, offset: m.offset, error: error))
    }
}

/// A Kafka producer (`rd_kafka_t` of type producer). Thread-safe; see the file header.
public final class KafkaProducer: @unchecked Sendable {
    private let rk: OpaquePointer
    private let state: DeliveryState
    private let lock = NSLock()
    private var topics: [String: OpaquePointer] = [:]

    /// - Parameter onDelivery: optional per-message report, called on the thread that runs
    ///   `poll`/`flush`. Counts are kept either way (`deliveryStats`).
    public init(config: KafkaConfig, onDelivery: (@Sendable (KafkaDeliveryReport) -> Void)? = nil) throws(KafkaError) {
        let conf = try config.make("KafkaProducer")
        let state = DeliveryState(onDelivery: onDelivery)
        rd_kafka_conf_set_dr_msg_cb(conf, deliveryCallback)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(state).toOpaque())
        self.rk = try newHandle(RD_KAFKA_PRODUCER, conf, "rd_kafka_new(producer)")
        self.state = state
    }

    deinit {
        _ = rd_kafka_flush(rk, 5_000)
        for (_, rkt) in topics { rd_kafka_topic_destroy(rkt) }
        rd_kafka_destroy(rk)  // after this no callback can reach `state`
    }

    private func topicHandle(_ name: String) throws(KafkaError) -> OpaquePointer {
        lock.lock(); defer { lock.unlock() }
        if let t = topics[name] { return t }
        guard let t = rd_kafka_topic_new(rk, name, nil) else {
            throw KafkaError("rd_kafka_topic_new(\(name))", code: rd_kafka_last_error())
        }
        topics[name] = t
        return t
    }

    /// Enqueues one message (payload and key are copied). `partition: nil` uses the
    /// configured partitioner (by key hash by default). If the local queue is full
    /// (`_QUEUE_FULL`) this serves delivery reports and retries for up to `queueFullWait`.
    public func produce(topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8],
                        queueFullWait: Duration = .seconds(30)) throws(KafkaError) {
        let rkt = try topicHandle(topic)
        let deadline = ContinuousClock.now + queueFullWait
        while true {
            let rc = value.withUnsafeBytes { v in
                withOptionalBytes(key) { k in
                    rd_kafka_produce(rkt, partition ?? -1 /* RD_KAFKA_PARTITION_UA */, 0x2 /* RD_KAFKA_MSG_F_COPY */,
                                     UnsafeMutableRawPointer(mutating: v.baseAddress), v.count,
                                     k?.baseAddress, k?.count ?? 0, nil)
                }
            }
            if rc == 0 { break }
            let err = rd_kafka_last_error()
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL && ContinuousClock.now < deadline {
                rd_kafka_poll(rk, 100)
                continue
            }
            throw KafkaError("rd_kafka_produce(\(topic))", code: err)
        }
        rd_kafka_poll(rk, 0)  // serve delivery reports as we go
    }

    /// The allocation-free form for hot loops (`RowProducer`): payload and key are copied by
    /// librdkafka before this returns, so the buffers need only live for the call. Delivery
    /// reports are not served here; call `poll()` every so often (queue-full waits do serve them).
    /// `giveUp` is asked while waiting for queue space (the broker may be unreachable): true
    /// ends the wait with `KafkaError.interrupted`.
    public func produce(topic: String, partition: Int32?, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer,
                        queueFullWait: Duration = .seconds(30), giveUp: (() -> Bool)? = nil) throws(KafkaError) {
        let rkt = try topicHandle(topic)
        var deadline: ContinuousClock.Instant? = nil
        while true {
            let rc = rd_kafka_produce(rkt, partition ?? -1, 0x2 /* RD_KAFKA_MSG_F_COPY */,
                                      UnsafeMutableRawPointer(mutating: value.baseAddress), value.count,
                                      key?.baseAddress, key?.count ?? 0, nil)
            if rc == 0 { return }
            let err = rd_kafka_last_error()
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                let now = ContinuousClock.now
                if deadline == nil { deadline = now + queueFullWait }
                if giveUp?() == true { throw KafkaError.interrupted("rd_kafka_produce(\(topic))") }
                if now < deadline! { rd_kafka_poll(rk, 10); continue }
            }
            throw KafkaError("rd_kafka_produce(\(topic))", code: err)
        }
    }

    /// Convenience for UTF-8 keys and values.
    public func produce(topic: String, partition: Int32? = nil, key: String?, value: String) throws(KafkaError) {
        try produce(topic: topic, partition: partition, key: key.map { Array($0.utf8) }, value: Array(value.utf8))
    }

    /// Serves queued delivery reports (`rd_kafka_poll`); returns how many events were served.
    @discardableResult
    public func poll(timeout: Duration = .zero) -> Int {
        Int(rd_kafka_poll(rk, milliseconds(timeout)))
    }

    /// Waits until every queued message is delivered or failed (`rd_kafka_flush`).
    /// Throws `KafkaError` with `isTimeout` if messages are still outstanding.
    public func flush(timeout: Duration) throws(KafkaError) {
        try kafkaCheck(rd_kafka_flush(rk, milliseconds(timeout)), "rd_kafka_flush (\(outstanding) messages outstanding)")
    }

    /// Drops every message not yet delivered (`rd_kafka_purge`, queued and in flight) and serves
    /// their delivery reports (as failures), so nothing waits for an unreachable broker any more.
    public func purge() {
        _ = rd_kafka_purge(rk, 0x1 /* RD_KAFKA_PURGE_F_QUEUE */ | 0x2 /* RD_KAFKA_PURGE_F_INFLIGHT */)
        rd_kafka_poll(rk, 0)
    }

    /// Messages produced but not yet reported (`rd_kafka_outq_len`).
    public var outstanding: Int { Int(rd_kafka_outq_len(rk)) }

    /// Delivery reports received so far.
    public var deliveryStats: KafkaDeliveryStats { state.lock.withLock { state.stats } }

    /// Number of partitions of `topic` (from broker metadata).
    public func partitionCount(topic: String, timeout: Duration = .seconds(10)) throws(KafkaError) -> Int {
        try Streaming.partitionCount(rk, topic: topic, timeout: timeout)
    }
}

private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}

// MARK: - Consumer

/// One message as delivered to the consumer.
public struct KafkaMessage: Sendable, Equatable {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    public let key: [UInt8]?
    public let value: [UInt8]
    /// Message timestamp in milliseconds since the epoch, if the broker provided one.
    public let timestampMs: Int64?
}

/// A consumed message seen in place (`KafkaMessageBatch.message`): `value` points into
/// librdkafka's buffer and is valid while its batch is alive.
public struct KafkaMessageView {
    public let partition: Int32
    public let offset: Int64
    public let value: UnsafeRawBufferPointer
    public let timestampMs: Int64?
}

/// Messages of one `KafkaConsumer.pollBatch`, alive (in librdkafka's buffers) until the batch is
/// released. Views are valid while the batch is. Safe to read from several threads at once.
public final class KafkaMessageBatch: @unchecked Sendable {
    fileprivate var messages: [UnsafeMutablePointer<rd_kafka_message_t>] = []
    /// Per-partition errors and end-of-partition events (no messages).
    public fileprivate(set) var events = KafkaPollBatch()

    fileprivate init() {}
    deinit { for p in messages { rd_kafka_message_destroy(p) } }

    /// Good messages in the batch.
    public var count: Int { messages.count }

    /// The partition of message `i` (cheap: for routing before handling).
    public func partition(_ i: Int) -> Int32 { messages[i].pointee.partition }

    /// Message `i` in place.
    public func message(_ i: Int) -> KafkaMessageView {
        let p = messages[i]
        let m = p.pointee
        var tstype = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let ts = rd_kafka_message_timestamp(p, &tstype)
        return KafkaMessageView(partition: m.partition, offset: m.offset,
                                value: UnsafeRawBufferPointer(start: m.payload, count: m.payload == nil ? 0 : m.len),
                                timestampMs: tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : ts)
    }
}

/// What one `poll` returned: messages, plus per-partition errors (for example
/// `_AUTO_OFFSET_RESET` when an assigned offset fell out of retention and
/// `auto.offset.reset=error`). Errors never drop messages that arrived with them.
public struct KafkaPollBatch: Sendable {
    public var messages: [KafkaMessage] = []
    public var errors: [KafkaPartitionError] = []
    /// Partitions that reached their end (only with `enable.partition.eof=true`).
    public var endOfPartition: [KafkaTopicPartition] = []
    public init() {}
}

public struct KafkaTopicPartition: Sendable, Hashable {
    public let topic: String
    public let partition: Int32
    public init(topic: String, partition: Int32) { self.topic = topic; self.partition = partition }
}

public struct KafkaPartitionError: Error, Sendable {
    public let topic: String?
    public let partition: Int32
    public let offset: Int64
    public let error: KafkaError
}

/// One partition to read and the offset to start from (`KafkaOffset.beginning`/`.end` or an
/// absolute offset).
public struct KafkaAssignment: Sendable, Equatable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic; self.partition = partition; self.offset = offset
    }
}

/// Errors librdkafka reported through its error callback (broker down, all brokers down, …):
/// they do not stop a client — librdkafka keeps reconnecting — but the owner should say so.
private final class ClientErrorState: @unchecked Sendable {
    let lock = NSLock()
    var count = 0
    var last: String? = nil
}

private let errorCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = { _, code, reason, opaque in
    guard let opaque else { return }
    let state = Unmanaged<ClientErrorState>.fromOpaque(opaque).takeUnretainedValue()
    let text = reason.map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(rd_kafka_resp_err_t(rawValue: code)))
    // The group coordinator is not used with explicit assignment: its connection errors say
    // nothing about whether data can be fetched.
    if text.hasPrefix("GroupCoordinator") { return }
    state.lock.lock()
    state.count += 1
    state.last = text
    state.lock.unlock()
}

/// A Kafka consumer with explicit partition assignment (`rd_kafka_assign`): no group
/// rebalancing, the caller decides which partitions and offsets it reads and keeps its own
/// positions (e.g. in Redis). Owned by one task/thread (see the file header).
public final class KafkaConsumer: @unchecked Sendable {
    private let rk: OpaquePointer
    private let queue: OpaquePointer
    private let errors: ClientErrorState  // reached from the C error callback; released after rk
    private let lock = NSLock()
    private var rawBuffer: [UnsafeMutablePointer<rd_kafka_message_t>?] = []

    /// librdkafka still needs a `group.id` for `rd_kafka_assign`; if the config has none a
    /// unique one is used. Auto-commit and offset storing are off unless the config says
    /// otherwise (positions belong to the caller).
    public init(config: KafkaConfig) throws(KafkaError) {
        var config = config
        if config["group.id"] == nil { config["group.id"] = "streamrec-assign-\(UUID().uuidString)" }
        if config["enable.auto.commit"] == nil { config["enable.auto.commit"] = "false" }
        if config["enable.auto.offset.store"] == nil { config["enable.auto.offset.store"] = "false" }
        let conf = try config.make("KafkaConsumer")
        let errors = ClientErrorState()
        rd_kafka_conf_set_error_cb(conf, errorCallback)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(errors).toOpaque())
        let rk = try newHandle(RD_KAFKA_CONSUMER, conf, "rd_kafka_new(consumer)")
        let err = rd_kafka_poll_set_consumer(rk)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let q = rd_kafka_queue_get_consumer(rk) else {
            rd_kafka_destroy(rk)
            throw KafkaError("rd_kafka_poll_set_consumer", code: err)
        }
        self.rk = rk
        self.queue = q
        self.errors = errors
    }

    /// Client errors (broker connections lost or refused, …) reported since the last call: how
    /// many, and the last one's text. librdkafka delivers them while the consumer is polled (often
    /// seconds late, aggregated) and keeps reconnecting meanwhile.
    public func takeClientErrors() -> (count: Int, last: String?) {
        errors.lock.lock(); defer { errors.lock.unlock() }
        defer { errors.count = 0; errors.last = nil }
        return (errors.count, errors.last)
    }

    deinit {
        rd_kafka_queue_destroy(queue)
        // No consumer close: partitions are assigned explicitly (no group to leave) and progress
        // lives in Redis, and rd_kafka_consumer_close can wait for a broker that is gone.
        rd_kafka_destroy_flags(rk, Int32(RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE))
    }

    /// Replaces the current assignment (`rd_kafka_assign`). An empty list unassigns all.
    public func assign(_ assignments: [KafkaAssignment]) throws(KafkaError) {
        lock.lock(); defer { lock.unlock() }
        guard let list = rd_kafka_topic_partition_list_new(Int32(assignments.count)) else {
            throw KafkaError("rd_kafka_topic_partition_list_new", message: "allocation failed")
        }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for a in assignments {
            guard let tp = rd_kafka_topic_partition_list_add(list, a.topic, a.partition) else {
                throw KafkaError("rd_kafka_topic_partition_list_add", message: "allocation failed")
            }
            tp.pointee.offset = a.offset
        }
        try kafkaCheck(rd_kafka_assign(rk, list), "rd_kafka_assign(\(assignments.count) partitions)")
    }

    /// Returns up to `maxMessages` messages, waiting at most `timeout` for the first one
    /// (`rd_kafka_consume_batch_queue`). An empty batch means nothing arrived in time.
    public func poll(maxMessages: Int = 1000, timeout: Duration = .milliseconds(500)) throws(KafkaError) -> KafkaPollBatch {
        precondition(maxMessages > 0, "maxMessages must be positive")
        lock.lock(); defer { lock.unlock() }
        var raw = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: maxMessages)
        let n = rd_kafka_consume_batch_queue(queue, milliseconds(timeout), &raw, maxMessages)
        if n < 0 { throw KafkaError("rd_kafka_consume_batch_queue", code: rd_kafka_last_error()) }
        var batch = KafkaPollBatch()
        batch.messages.reserveCapacity(n)
        for i in 0 ..< n {
            guard let p = raw[i] else { continue }
            defer { rd_kafka_message_destroy(p) }
            let m = p.pointee
            let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) }
            if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                batch.endOfPartition.append(KafkaTopicPartition(topic: topic ?? "", partition: m.partition))
                continue
            }
            if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                var text = String(cString: rd_kafka_err2str(m.err))
                if let payload = m.payload, m.len > 0 {
                    text = String(decoding: UnsafeRawBufferPointer(start: payload, count: m.len), as: UTF8.self)
                }
                batch.errors.append(KafkaPartitionError(topic: topic, partition: m.partition, offset: m.offset,
                                                        error: KafkaError("consume", code: m.err.rawValue, message: text)))
                continue
            }
            let value = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? []
            let key = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
            var tstype = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            let ts = rd_kafka_message_timestamp(p, &tstype)
            batch.messages.append(KafkaMessage(topic: topic ?? "", partition: m.partition, offset: m.offset,
                                               key: key, value: value,
                                               timestampMs: tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : ts))
        }
        return batch
    }

    /// Zero-copy poll: like `poll(maxMessages:timeout:)`, but the good messages stay in
    /// librdkafka's buffers, alive until the returned batch is released (no per-message arrays,
    /// strings or topic names), so one or several threads can handle them in place. Errors and
    /// end-of-partition events are in `events`; `count` counts good messages only.
    public func pollBatch(maxMessages: Int = 1000, timeout: Duration = .milliseconds(500)) throws -> KafkaMessageBatch {
        precondition(maxMessages > 0, "maxMessages must be positive")
        lock.lock(); defer { lock.unlock() }
        if rawBuffer.count < maxMessages { rawBuffer = .init(repeating: nil, count: maxMessages) }
        let n = rawBuffer.withUnsafeMutableBufferPointer { rd_kafka_consume_batch_queue(queue, milliseconds(timeout), $0.baseAddress, maxMessages) }
        if n < 0 { throw KafkaError("rd_kafka_consume_batch_queue", code: rd_kafka_last_error()) }
        let batch = KafkaMessageBatch()
        batch.messages.reserveCapacity(n)
        for i in 0..<max(0, n) {
            guard let p = rawBuffer[i] else { continue }
            rawBuffer[i] = nil
            let m = p.pointee
            if m.err == RD_KAFKA_RESP_ERR_NO_ERROR { batch.messages.append(p); continue }
            defer { rd_kafka_message_destroy(p) }
            let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) }
            if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                batch.events.endOfPartition.append(KafkaTopicPartition(topic: topic ?? "", partition: m.partition))
            } else {
                var text = String(cString: rd_kafka_err2str(m.err))
                if let payload = m.payload, m.len > 0 {
                    text = String(decoding: UnsafeRawBufferPointer(start: payload, count: m.len), as: UTF8.self)
                }
                batch.events.errors.append(KafkaPartitionError(topic: topic, partition: m.partition, offset: m.offset,
                                                               error: KafkaError("consume", code: m.err.rawValue, message: text)))
            }
        }
        return batch
    }

    /// Queries the broker for a partition's low/high watermarks
    /// (`rd_kafka_query_watermark_offsets`).
    public func watermarks(topic: String, partition: Int32, timeout: Duration = .seconds(10)) throws(KafkaError) -> KafkaWatermarks {
        try Streaming.watermarks(rk, topic: topic, partition: partition, timeout: timeout)
    }

    /// The watermarks librdkafka last learnt from fetch responses (`rd_kafka_get_watermark_offsets`):
    /// never blocks and sends nothing; nil while a value is still unknown (before the first fetch
    /// response of the partition).
    public func cachedWatermarks(topic: String, partition: Int32) -> KafkaWatermarks? {
        var low: Int64 = -1, high: Int64 = -1
        guard rd_kafka_get_watermark_offsets(rk, topic, partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR,
              low >= 0, high >= 0 else { return nil }
        return KafkaWatermarks(low: low, high: high)
    }

    /// Number of partitions of `topic` (from broker metadata).
    public func partitionCount(topic: String, timeout: Duration = .seconds(10)) throws(KafkaError) -> Int {
        try Streaming.partitionCount(rk, topic: topic, timeout: timeout)
    }
}

// MARK: - Admin

/// A topic to create: name, partition count, replication factor and topic configs
/// (`retention.bytes`, `cleanup.policy`, … passed to the broker unchanged).
public struct KafkaNewTopic: Sendable, Equatable {
    public var name: String
    public var partitions: Int
    public var replicationFactor: Int
    public var config: [String: String]
    public init(name: String, partitions: Int, replicationFactor: Int = 1, config: [String: String] = [:]) {
        self.name = name; self.partitions = partitions; self.replicationFactor = replicationFactor; self.config = config
    }
}

/// The Kafka admin API (`rd_kafka_CreateTopics`, `rd_kafka_DescribeConfigs`) on a client handle of
/// its own. A real broker auto-creates a topic (if at all) with its default partition count and
/// configs; topics that need several partitions or their own retention are created here.
/// Thread-safe (each call waits on its own result queue).
public final class KafkaAdmin: @unchecked Sendable {
    private let rk: OpaquePointer

    public init(config: KafkaConfig) throws(KafkaError) {
        let conf = try config.make("KafkaAdmin")
        rk = try newHandle(RD_KAFKA_PRODUCER, conf, "rd_kafka_new(admin)")
    }

    deinit { rd_kafka_destroy(rk) }

    /// Creates `topics` in one request and waits for the broker's answer (at most `timeout`).
    /// Throws the first topic's error (e.g. `TOPIC_ALREADY_EXISTS`, `INVALID_REPLICATION_FACTOR`,
    /// an unknown config name) with the broker's message; topics without an error were created.
    public func createTopics(_ topics: [KafkaNewTopic], timeout: Duration = .seconds(30)) throws(KafkaError) {
        guard !topics.isEmpty else { return }
        let operation = "rd_kafka_CreateTopics(\(topics.map(\.name).joined(separator: ", ")))"
        var errstr = [CChar](repeating: 0, count: 512)
        var newTopics: [OpaquePointer?] = []
        defer { for t in newTopics { rd_kafka_NewTopic_destroy(t) } }
        for t in topics {
            guard let nt = rd_kafka_NewTopic_new(t.name, Int32(t.partitions), Int32(t.replicationFactor), &errstr, errstr.count) else {
                throw KafkaError(operation, code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, message: "topic \(t.name): \(cString(errstr))")
            }
            newTopics.append(nt)
            for (key, value) in t.config.sorted(by: { $0.key < $1.key }) {
                try kafkaCheck(rd_kafka_NewTopic_set_config(nt, key, value), "\(operation): config \(key)=\(value)")
            }
        }
        let event = try request(RD_KAFKA_ADMIN_OP_CREATETOPICS, operation, timeout: timeout) { options, queue in
            newTopics.withUnsafeMutableBufferPointer { rd_kafka_CreateTopics(rk, $0.baseAddress, $0.count, options, queue) }
        }
        defer { rd_kafka_event_destroy(event) }
        guard let result = rd_kafka_event_CreateTopics_result(event) else {
            throw KafkaError(operation, message: "unexpected admin result event")
        }
        var count = 0
        guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return }
        for i in 0 ..< count {
            guard let r = results[i] else { continue }
            let err = rd_kafka_topic_result_error(r)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { continue }
            let name = String(cString: rd_kafka_topic_result_name(r))
            let text = rd_kafka_topic_result_error_string(r).map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(err))
            throw KafkaError("\(operation): topic \(name)", code: err.rawValue, message: text)
        }
    }

    /// The broker's configs of `topic` (`DescribeConfigs`), name → value (entries without a value,
    /// e.g. sensitive ones, are left out).
    public func topicConfig(_ topic: String, timeout: Duration = .seconds(30)) throws(KafkaError) -> [String: String] {
        let operation = "rd_kafka_DescribeConfigs(topic \(topic))"
        guard let resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic) else {
            throw KafkaError(operation, message: "rd_kafka_ConfigResource_new failed")
        }
        defer { rd_kafka_ConfigResource_destroy(resource) }
        var resources: [OpaquePointer?] = [resource]
        let event = try request(RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, operation, timeout: timeout) { options, queue in
            resources.withUnsafeMutableBufferPointer { rd_kafka_DescribeConfigs(rk, $0.baseAddress, $0.count, options, queue) }
        }
        defer { rd_kafka_event_destroy(event) }
        guard let result = rd_kafka_event_DescribeConfigs_result(event) else {
            throw KafkaError(operation, message: "unexpected admin result event")
        }
        var count = 0
        guard let described = rd_kafka_DescribeConfigs_result_resources(result, &count), count > 0, let r = described[0] else {
            throw KafkaError(operation, message: "no resource in the answer")
        }
        try kafkaCheck(rd_kafka_ConfigResource_error(r), operation)
        var entryCount = 0
        var out: [String: String] = [:]
        guard let entries = rd_kafka_ConfigResource_configs(r, &entryCount) else { return out }
        for i in 0 ..< entryCount {
            guard let e = entries[i], let value = rd_kafka_ConfigEntry_value(e) else { continue }
            out[String(cString: rd_kafka_ConfigEntry_name(e))] = String(cString: value)
        }
        return out
    }

    /// Number of partitions of `topic` (from broker metadata).
    public func partitionCount(topic: String, timeout: Duration = .seconds(10)) throws(KafkaError) -> Int {
        try Streaming.partitionCount(rk, topic: topic, timeout: timeout)
    }

    /// Runs one admin request with its own options and result queue and returns the result event
    /// (the caller destroys it); a top-level error (timeout, broker unreachable) is thrown.
    private func request(_ op: rd_kafka_admin_op_t, _ operation: String, timeout: Duration,
                         _ send: (OpaquePointer?, OpaquePointer?) -> Void) throws(KafkaError) -> OpaquePointer {
        guard let options = rd_kafka_AdminOptions_new(rk, op) else {
            throw KafkaError(operation, message: "rd_kafka_AdminOptions_new failed")
        }
        defer { rd_kafka_AdminOptions_destroy(options) }
        var errstr = [CChar](repeating: 0, count: 512)
        let ms = milliseconds(timeout)
        try kafkaCheck(rd_kafka_AdminOptions_set_request_timeout(options, ms, &errstr, errstr.count), "\(operation): request timeout")
        if op == RD_KAFKA_ADMIN_OP_CREATETOPICS {
            // Wait for the topic to be created on the broker, not just for the request to be accepted.
            try kafkaCheck(rd_kafka_AdminOptions_set_operation_timeout(options, ms, &errstr, errstr.count), "\(operation): operation timeout")
        }
        guard let queue = rd_kafka_queue_new(rk) else { throw KafkaError(operation, message: "rd_kafka_queue_new failed") }
        defer { rd_kafka_queue_destroy(queue) }
        send(options, queue)
        // A little longer than the request timeout: librdkafka answers a timed-out request itself.
        guard let event = rd_kafka_queue_poll(queue, ms + 5_000) else {
            throw KafkaError(operation, code: RD_KAFKA_RESP_ERR__TIMED_OUT)
        }
        let err = rd_kafka_event_error(event)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let text = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(err))
            rd_kafka_event_destroy(event)
            throw KafkaError(operation, code: err.rawValue, message: text)
        }
        return event
    }
}

// MARK: - Mock cluster

/// librdkafka's in-process mock Kafka cluster (`rd_kafka_mock_cluster_new`): real Kafka
/// protocol on loopback ports, in memory, roughly 5 MiB kept per partition. Any Kafka client
/// can use `bootstrapServers`. Lives until `destroy()` or deinit.
public final class MockKafkaCluster: @unchecked Sendable {
    private let rk: OpaquePointer          // dummy producer handle that owns the cluster
    private var cluster: OpaquePointer?
    private let lock = NSLock()
    /// `host:port,host:port,…` of the mock brokers.
    public let bootstrapServers: String

    /// Starts `brokers` mock brokers. `config` configures the dummy owner handle only
    /// (e.g. `log_level`).
    public init(brokers: Int = 3, config: KafkaConfig = KafkaConfig()) throws(KafkaError) {
        precondition(brokers > 0, "a mock cluster needs at least one broker")
        var config = config
        // The owner handle never connects anywhere; silence its "no bootstrap.servers" notice.
        if config["log_level"] == nil { config["log_level"] = "4" }
        let conf = try config.make("MockKafkaCluster")
        let rk = try newHandle(RD_KAFKA_PRODUCER, conf, "rd_kafka_new(mock owner)")
        guard let mc = rd_kafka_mock_cluster_new(rk, Int32(brokers)) else {
            rd_kafka_destroy(rk)
            throw KafkaError("rd_kafka_mock_cluster_new", message: "could not start \(brokers) mock brokers")
        }
        self.rk = rk
        self.cluster = mc
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(mc))
    }

    deinit { destroy() }

    /// Creates a topic (`rd_kafka_mock_topic_create`).
    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws(KafkaError) {
        lock.lock(); defer { lock.unlock() }
        guard let cluster else { throw KafkaError("rd_kafka_mock_topic_create", message: "mock cluster destroyed") }
        try kafkaCheck(rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor)),
                       "rd_kafka_mock_topic_create(\(name), \(partitions) partitions)")
    }

    /// Takes broker `id` (1-based) down (`rd_kafka_mock_broker_set_down`: its connections are
    /// closed and new ones refused) or back up — an outage for tests.
    public func setBroker(_ id: Int32, up: Bool) throws(KafkaError) {
        lock.lock(); defer { lock.unlock() }
        guard let cluster else { throw KafkaError("rd_kafka_mock_broker_set_up/down", message: "mock cluster destroyed") }
        try kafkaCheck(up ? rd_kafka_mock_broker_set_up(cluster, id) : rd_kafka_mock_broker_set_down(cluster, id),
                       "rd_kafka_mock_broker_set_\(up ? "up" : "down")(\(id))")
    }

    /// Stops the brokers and frees the owner handle. Idempotent.
    public func destroy() {
        lock.lock(); defer { lock.unlock() }
        guard let mc = cluster else { return }
        cluster = nil
        rd_kafka_mock_cluster_destroy(mc)
        rd_kafka_destroy(rk)
    }
}
