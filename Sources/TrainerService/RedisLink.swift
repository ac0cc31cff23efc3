import Logging
import Foundation
import Streaming

/// The trainer's Redis connection across Redis restarts.
///
/// A call that fails with an outage (`RedisError.isOutage`: unreachable, or LOADING while a
/// restarted Redis reads its AOF) marks the link down with one log line; `isUp()` then reconnects at most every
/// `retryInterval` and logs once when Redis is back. Meanwhile the trainer simply has no batches
/// (it waits, and still notices SIGTERM): nothing is lost, because what the model has trained is
/// recorded in its checkpoints, not in Redis. Owned by the trainer thread.
final class RedisLink {
    let redis: RedisConnection
    let address: String
    let retryInterval: TimeInterval
    private let logger: Logger
    private var downSince: Date?
    private var nextAttempt = Date.distantPast

    init(redis: RedisConnection, address: String, retryInterval: TimeInterval = 0.5, logger: Logger) {
        self.redis = redis
        self.address = address
        self.retryInterval = retryInterval
        self.logger = logger
    }

    var isDown: Bool { downSince != nil }

    /// True when the connection is usable; while it is down, tries to reconnect (rate-limited).
    func isUp() -> Bool {
        guard let since = downSince else { return true }
        guard Date() >= nextAttempt else { return false }
        nextAttempt = Date().addingTimeInterval(retryInterval)
        do {
            try redis.reconnect()
            _ = try redis.command(["PING"]).throwingIfError()
        } catch {
            return false
        }
        downSince = nil
        logger.info("\(String(format: "Redis at %@ is back after %.1fs; training continues", address, Date().timeIntervalSince(since)))")
        return true
    }

    /// Records an outage (logs only its start); rethrows anything that is not one.
    func absorb(_ error: Error) throws {
        guard let e = error as? RedisError, e.isOutage else { throw error }
        if downSince == nil {
            downSince = Date()
            nextAttempt = Date().addingTimeInterval(retryInterval)
            logger.warning("Redis at \(address) unavailable (\(error)); waiting for it, retrying every \(retryInterval)s")
        }
    }

    /// Runs `body` unless the link is down; an outage is absorbed and gives nil.
    func attempt<T>(_ body: () throws -> T) throws -> T? {
        guard isUp() else { return nil }
        do { return try body() } catch {
            try absorb(error)
            return nil
        }
    }
}
