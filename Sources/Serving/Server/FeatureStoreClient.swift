// Serving/FeatureStoreClient: the server's reads of the feature store in Redis, off the request path.
//
// Purpose and limits
//   * hiredis is blocking. Route handlers run on Swift's cooperative pool (a thread per core) and
//     the connections on NIO's event loops; a blocked Redis read on either would stall every other
//     request. So Redis commands run only on this client's own threads.
//   * `connections` worker threads, each owning one `RedisConnection` (made on first use, made
//     again after a failure), take calls from one FIFO queue. A route awaits its call through a
//     continuation; nothing on the request side ever blocks.
//   * Bounded: each call has a deadline (`timeout`, 200 ms by default). The caller gets
//     `.timedOut` at the deadline whatever the worker is doing (a watchdog thread keeps the
//     deadlines in call order — one timeout for every call, so that is deadline order — and
//     wakes only when the oldest unanswered one is due, not once per call); the hiredis socket timeout is the
//     same, so a worker stuck on a hung Redis is free again about then; a call still queued at its
//     deadline is dropped unrun; at most `maxWaiting` calls queue (more get `.overloaded` at once).
//   * A call that fails at once on a connection made before (it died with a restarted Redis) is
//     tried once more on a new connection, so no spurious 503 follows a Redis restart.
//   * Outages (`RedisError.isOutage`: refused, connection lost or timed out, LOADING, BUSY…) mark
//     the store down with one log line; while it is down, calls fail at once with `.unavailable`
//     except one probe every `retryInterval`, which reconnects. The first call that succeeds
//     marks it up again (one log line). No restart is needed when Redis comes back.
//
// Threading rule
//   Every method is safe from any task or thread. `FeatureStore` and `RedisConnection` objects
//   live on exactly one worker thread each and never leave it.

import Logging
import FeatureStore
import Foundation
import Streaming
import Synchronization

/// Where the feature store is and how long a read may take.
public struct FeatureStoreSettings: Sendable, Equatable {
    /// The Redis (address, login, TLS); printed with its password masked.
    public var address: RedisEndpoint
    /// Key prefix of the feature store (`sr`).
    public var prefix: String
    /// Longest a call may take, queueing included; also hiredis's connect and socket timeout.
    public var timeout: Duration
    /// While Redis is down, how often one call may try to reconnect (the others fail at once).
    public var retryInterval: Duration
    /// Worker threads, each with its own connection.
    public var connections: Int
    /// Most calls waiting for a worker; more are refused with `.overloaded`.
    public var maxWaiting: Int

    public init(address: RedisEndpoint, prefix: String = "sr", timeout: Duration = .milliseconds(200),
                retryInterval: Duration = .milliseconds(250), connections: Int = 2, maxWaiting: Int = 64) {
        self.address = address
        self.prefix = prefix
        self.timeout = timeout
        self.retryInterval = retryInterval
        self.connections = max(1, connections)
        self.maxWaiting = max(1, maxWaiting)
    }
}

/// Why a feature-store call gave no value.
public enum FeatureStoreClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Redis cannot be reached or is not serving (refused, connection lost or timed out, LOADING…).
    case unavailable(String)
    /// No answer within the call's timeout.
    case timedOut(Duration)
    /// `maxWaiting` calls were already waiting for a connection.
    case overloaded(Int)
    /// Redis answered, but the read failed (an unexpected reply or a non-outage error reply).
    case failed(String)
    /// The client was closed.
    case closed

    /// True when retrying later may succeed (everything but `.failed`): a 503, not a 500.
    public var isOutage: Bool { if case .failed = self { false } else { true } }

    public var description: String {
        switch self {
        case .unavailable(let m): m
        case .timedOut(let d): "no answer from Redis within \(d.milliseconds) ms"
        case .overloaded(let n): "\(n) reads already waiting for Redis"
        case .failed(let m): m
        case .closed: "the feature store client is closed (the server is stopping)"
        }
    }
}

/// The server's connection to the feature store. See the file header for threads and bounds.
///
/// ```swift
/// let client = FeatureStoreClient(settings: FeatureStoreSettings(address: try RedisEndpoint(parsing: "127.0.0.1:6379")))
/// let popular = try await client.popularItems(n: 10)   // throws FeatureStoreClientError
/// ```
public final class FeatureStoreClient: Sendable {
    public let settings: FeatureStoreSettings
    private let core: Core

    /// Starts the worker threads; they connect on their first call.
    public init(settings: FeatureStoreSettings, logger: Logger = Logger(label: "serve")) {
        self.settings = settings
        core = Core(settings: settings, logger: logger)
        for k in 0..<settings.connections {
            let thread = Thread { [core] in core.work() }
            thread.name = "feature-store-\(k)"
            thread.start()
        }
        let watchdog = Thread { [core] in core.watchDeadlines() }
        watchdog.name = "feature-store-deadlines"
        watchdog.start()
    }

    /// Stops the worker threads (after the call each is running); later calls get `.closed`.
    deinit { core.close() }

    /// Stops the worker threads now; calls waiting or made later get `.closed`.
    public func close() { core.close() }

    /// Calls being run by a worker right now (for tests and diagnostics).
    var callsInProgress: Int { core.inProgress }

    /// Runs `body` on a worker thread with that worker's store, within `settings.timeout`.
    public func call<T: Sendable>(_ body: @escaping @Sendable (FeatureStore) throws -> T) async throws(FeatureStoreClientError) -> T {
        let timeout = settings.timeout
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, FeatureStoreClientError>, Never>) in
            let pending = PendingCall(continuation)
            let job = Job(isFinished: { pending.isFinished },
                          run: { store, succeeded in
                              do {
                                  let value = try body(store)
                                  succeeded()
                                  pending.finish(.success(value))
                                  return nil
                              } catch { return error }
                          },
                          fail: { pending.finish(.failure($0)) })
            if let refusal = core.submit(job) {
                pending.finish(.failure(refusal))
                return
            }
            core.watch(Deadline(at: ContinuousClock.now + timeout, isFinished: { pending.isFinished },
                                expire: { pending.finish(.failure(.timedOut(timeout))) }))
        }
        return try result.get()
    }

    /// The popular items (`FeatureStore.popularItems`).
    public func popularItems(n: Int) async throws(FeatureStoreClientError) -> PopularItems {
        try await call { try $0.popularItems(n: n) }
    }

    /// PING.
    public func ping() async throws(FeatureStoreClientError) {
        try await call { _ = try $0.redis.command(["PING"]) }
    }
}

/// One call's continuation, resumed exactly once: by the worker, the timeout or a refusal,
/// whichever comes first.
private final class PendingCall<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<Result<T, FeatureStoreClientError>, Never>?>

    init(_ continuation: CheckedContinuation<Result<T, FeatureStoreClientError>, Never>) {
        self.continuation = Mutex(continuation)
    }

    var isFinished: Bool { continuation.withLock { $0 == nil } }

    func finish(_ result: Result<T, FeatureStoreClientError>) {
        let c = continuation.withLock { c -> CheckedContinuation<Result<T, FeatureStoreClientError>, Never>? in
            defer { c = nil }
            return c
        }
        c?.resume(returning: result)
    }
}

/// A call with its type erased, as the workers see it.
private struct Job: Sendable {
    /// True once the caller has its answer (timed out meanwhile): the worker skips the job.
    let isFinished: @Sendable () -> Bool
    /// Runs the call and, when it succeeded, calls the second argument (the worker marks the
    /// store up) and then answers the caller; returns the error instead when it failed.
    let run: @Sendable (FeatureStore, () -> Void) -> (any Error)?
    /// Answers the caller with an error.
    let fail: @Sendable (FeatureStoreClientError) -> Void
}

/// One call's deadline, as the watchdog sees it.
private struct Deadline: Sendable {
    let at: ContinuousClock.Instant
    let isFinished: @Sendable () -> Bool
    /// Answers the caller with `.timedOut` (a no-op when it has its answer).
    let expire: @Sendable () -> Void
}

/// The queue, the up/down state and the worker loop, shared by the client and its threads (the
/// threads hold this, not the client, so dropping the client closes them).
private final class Core: @unchecked Sendable {
    let settings: FeatureStoreSettings
    let logger: Logger
    // The calls' deadlines, oldest first; guarded by `deadlineCondition`.
    private let deadlineCondition = NSCondition()
    private var deadlines: [Deadline] = []
    private var deadlineHead = 0
    private var deadlinesClosed = false
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var head = 0
    private var closed = false
    private var running = 0
    private var down: (since: ContinuousClock.Instant, message: String)?
    private var nextAttempt = ContinuousClock.now

    init(settings: FeatureStoreSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    var inProgress: Int { condition.withLock { running } }

    /// Queues `job`, or says why not: closed, down (until the next reconnect attempt, which this
    /// job then becomes), or too many waiting.
    func submit(_ job: Job) -> FeatureStoreClientError? {
        condition.lock(); defer { condition.unlock() }
        if closed { return .closed }
        if let down {
            let now = ContinuousClock.now
            if now < nextAttempt { return .unavailable(down.message) }
            nextAttempt = now + settings.retryInterval
        }
        if queue.count - head >= settings.maxWaiting { return .overloaded(settings.maxWaiting) }
        queue.append(job)
        condition.signal()
        return nil
    }

    /// Adds a call's deadline (after every deadline added before it: one timeout for all calls).
    func watch(_ deadline: Deadline) {
        deadlineCondition.lock()
        deadlines.append(deadline)
        // The watchdog sleeps until the oldest deadline, or without limit when there was none.
        if deadlines.count - deadlineHead == 1 { deadlineCondition.signal() }
        deadlineCondition.unlock()
    }

    /// The watchdog thread: answers `.timedOut` to every call still unanswered at its deadline.
    /// Wakes when the oldest unanswered deadline is due, dropping the answered ones on the way.
    /// After `close()` it ends once every deadline it holds has passed or been answered.
    func watchDeadlines() {
        deadlineCondition.lock()
        while true {
            while deadlineHead < deadlines.count && deadlines[deadlineHead].isFinished() { deadlineHead += 1 }
            if deadlineHead > 256 && deadlineHead * 2 > deadlines.count {
                deadlines.removeFirst(deadlineHead)
                deadlineHead = 0
            }
            guard deadlineHead < deadlines.count else {
                if deadlinesClosed { break }
                deadlineCondition.wait()
                continue
            }
            let oldest = deadlines[deadlineHead]
            let left = oldest.at - ContinuousClock.now
            if left <= .zero {
                deadlineHead += 1
                deadlineCondition.unlock()
                oldest.expire()
                deadlineCondition.lock()
            } else {
                _ = deadlineCondition.wait(until: Date().addingTimeInterval(left.seconds))
            }
        }
        deadlines = []
        deadlineHead = 0
        deadlineCondition.unlock()
    }

    func close() {
        deadlineCondition.withLock {
            deadlinesClosed = true
            deadlineCondition.signal()
        }
        condition.lock()
        closed = true
        let waiting = queue[head...]
        queue = []
        head = 0
        condition.broadcast()
        condition.unlock()
        for job in waiting { job.fail(.closed) }
    }

    /// The next job whose caller still waits, or nil once closed.
    private func take() -> Job? {
        condition.lock(); defer { condition.unlock() }
        while !closed {
            if head < queue.count {
                let job = queue[head]
                head += 1
                if head > 64 && head * 2 > queue.count { queue.removeFirst(head); head = 0 }
                if job.isFinished() { continue }
                running += 1
                return job
            }
            condition.wait()
        }
        return nil
    }

    /// A worker thread: one connection, jobs until closed.
    func work() {
        var store: FeatureStore?
        while let job = take() {
            var retried = false
            while true {
                let started = ContinuousClock.now
                var reused = false
                do {
                    if let live = store, live.redis.isConnected {
                        reused = true
                    } else {
                        store?.redis.close()
                        store = nil
                        store = FeatureStore(redis: try RedisConnection(address: settings.address, timeout: settings.timeout),
                                             prefix: settings.prefix)
                    }
                    // Marked up before the caller is answered, so its next call is not refused.
                    if let error = job.run(store!, markUp) { throw error }
                } catch let error as RedisError where error.isOutage || error.needsConfiguration {
                    // A refused login or TLS counts as down too: tried again at most every
                    // retryInterval (so fixing the server's password heals serve), logged once.
                    // A connection that sat idle may have died with a Redis that was restarted
                    // meanwhile: if it failed at once (not a timeout), try once more on a new one.
                    if case .connectionLost = error, reused, !retried, !job.isFinished(),
                       ContinuousClock.now - started < settings.timeout / 2 {
                        retried = true
                        store?.redis.close()
                        store = nil
                        continue
                    }
                    markDown("\(error)")
                    job.fail(.unavailable("\(error)"))
                } catch {
                    markUp()  // Redis answered; the read itself failed.
                    job.fail(.failed("\(error)"))
                }
                break
            }
            condition.withLock { running -= 1 }
        }
        store?.redis.close()
    }

    private func markDown(_ message: String) {
        let first = condition.withLock { () -> Bool in
            nextAttempt = ContinuousClock.now + settings.retryInterval
            if down == nil { down = (ContinuousClock.now, message); return true }
            down!.message = message
            return false
        }
        if first {
            logger.warning(.init(stringLiteral: "feature store Redis at \(settings.address) unavailable (\(message)); /v1/popular and the stateful /v1/recommend answer 503, "
                + "reconnecting at most every \(settings.retryInterval.milliseconds) ms"))
        }
    }

    private func markUp() {
        let since = condition.withLock { () -> ContinuousClock.Instant? in
            defer { down = nil }
            return down?.since
        }
        if let since {
            logger.info(.init(stringLiteral: String(format: "feature store Redis at %@ is back after %.1f s", settings.address.description,
                       Double((ContinuousClock.now - since).milliseconds) / 1000)))
        }
    }
}
