// librdkafka's own messages, through swift-log instead of its `%3|…|FAIL|…` lines on stderr.
// While a broker is away librdkafka reports every failed connect attempt (several a second per
// broker and thread); those are summarised: one line when the trouble starts, a count in
// between, one line when it has been quiet for `quietPeriod`.
import CRdKafka
import Foundation
import Logging
import Synchronization

/// Routes every librdkafka handle's log callback (set in `KafkaConfig.make`) to one logger.
public final class KafkaLog: Sendable {
    /// The process's router. `install(logger:)` replaces its logger (before clients are made).
    public static let shared = KafkaLog()

    public init() {}

    /// Quiet time after the last connection error that ends an outage.
    public static let quietPeriod: Duration = .seconds(5)

    struct Outage {
        var started: ContinuousClock.Instant
        var last: ContinuousClock.Instant
        var suppressed: Int
        var first: String
    }
    struct State {
        var logger = Logger(label: "kafka")
        var outage: Outage?
        var outages = 0
        var checkScheduled = false
    }
    private let state = Mutex(State())

    public func install(logger: Logger) { state.withLock { $0.logger = logger } }

    /// Outages seen so far (each reported with one start and one end line).
    public var outages: Int { state.withLock { $0.outages } }

    /// A connection error: failed connect, refused, disconnected, all brokers down, timeouts.
    static func isConnectionTrouble(facility: String, message: String) -> Bool {
        facility == "FAIL" || facility == "ERROR" && (message.contains("brokers are down") || message.contains("Connect"))
            || message.contains("Connection refused") || message.contains("Disconnected")
    }

    /// librdkafka `level` is syslog's: 0–3 error, 4 warning, 5 notice, 6 info, 7 debug.
    public func receive(level: Int32, facility: String, message: String, now: ContinuousClock.Instant = .now) {
        let swiftLevel: Logger.Level = level <= 3 ? .error : level == 4 ? .warning : level == 5 ? .notice : level == 6 ? .info : .debug
        var emit: [(Logger.Level, String, Logger.Metadata)] = []
        var schedule = false
        let logger: Logger = state.withLock { s in
            guard Self.isConnectionTrouble(facility: facility, message: message) else {
                emit.append((swiftLevel, message, ["facility": .string(facility)]))
                return s.logger
            }
            if var o = s.outage {
                o.suppressed += 1; o.last = now; s.outage = o
            } else {
                s.outage = Outage(started: now, last: now, suppressed: 0, first: message)
                s.outages += 1
                emit.append((.warning, "Kafka connection trouble: \(message) — librdkafka keeps retrying; repeats are counted "
                             + "and summarised when it has been quiet for \(Self.quietPeriod)", ["facility": .string(facility)]))
                if !s.checkScheduled { s.checkScheduled = true; schedule = true }
            }
            return s.logger
        }
        for (l, m, md) in emit { logger.log(level: l, "\(m)", metadata: md) }
        if schedule { scheduleQuietCheck() }
    }

    /// Ends the outage if nothing was reported for `quietPeriod`; returns whether it ended.
    @discardableResult
    public func endOutageIfQuiet(now: ContinuousClock.Instant = .now) -> Bool {
        var line: String?
        let logger: Logger = state.withLock { s in
            guard let o = s.outage, now - o.last >= Self.quietPeriod else { return s.logger }
            s.outage = nil
            let span = o.last - o.started
            line = "Kafka connection errors stopped: \(o.suppressed + 1) in \(Self.seconds(span)) s (\(o.suppressed) not printed); "
                + "quiet for \(Self.quietPeriod) since the last"
            return s.logger
        }
        if let line { logger.notice("\(line)") }
        return line != nil
    }

    /// At exit: an outage still going on is summarised now (its count would be lost otherwise).
    public func finish() {
        var line: String?
        let logger: Logger = state.withLock { s in
            guard let o = s.outage else { return s.logger }
            s.outage = nil
            line = "Kafka connection errors: \(o.suppressed + 1) in \(Self.seconds(o.last - o.started)) s (\(o.suppressed) not printed), "
                + "still failing when the process stopped"
            return s.logger
        }
        if let line { logger.warning("\(line)") }
    }

    private func scheduleQuietCheck() {
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(1)) { [self] in
            endOutageIfQuiet()
            let again = state.withLock { s in
                if s.outage == nil { s.checkScheduled = false; return false }
                return true
            }
            if again { scheduleQuietCheck() }
        }
    }

    static func seconds(_ d: Duration) -> String { String(format: "%.1f", d.seconds) }
}

/// The C log callback librdkafka calls from its threads.
let kafkaLogCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = { _, level, facility, buffer in
    KafkaLog.shared.receive(level: level, facility: facility.map { String(cString: $0) } ?? "",
                            message: buffer.map { String(cString: $0) } ?? "")
}
