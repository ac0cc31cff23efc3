// The Redis side of a feature worker: one connection with the retry funnel (`RedisLink`), and
// the committer thread that writes units while the worker thread parses the next rows.
//
// Threading rule: the worker thread owns one `RedisLink` (heartbeats, back-pressure, dictionary
// sync); the committer thread owns another (commits and dictionary growth). Units go through a
// bounded FIFO, so a partition's units are committed in order; the worker blocks when the queue
// is full (at most `capacity` units are in flight).

import Logging
import Features
import FeatureStore
import Foundation
import Streaming

/// A line said once per process run, by whichever thread gets there first.
final class OneTimeNotice: @unchecked Sendable {
    private let lock = NSLock()
    private var said = false
    func say(_ line: @autoclosure () -> Logger.Message, to logger: Logger, level: Logger.Level = .warning) {
        let first = lock.withLock { () -> Bool in defer { said = true }; return !said }
        if first { logger.log(level: level, line()) }
    }
}

/// One Redis connection plus the retry funnel: Redis failures are retried with back-off
/// 100 ms → 5 s, each outage logged once (and its end); returns nil only when asked to stop while
/// Redis is still failing (said once per worker through `stopNotice`).
/// Every call is bounded: connect and each command time out after `timeout`, and the back-off
/// sleeps in 50 ms steps that notice a stop.
final class RedisLink {
    let address: RedisEndpoint
    let layout: FeatureStoreLayout
    let logger: Logger
    let stopping: () -> Bool
    let stopNotice: OneTimeNotice
    let timeout: Duration
    private var connection: RedisConnection?
    private(set) var store: FeatureStore!
    private var downSince: ContinuousClock.Instant? = nil
    /// True once this link gave up because the worker is stopping while Redis fails.
    private(set) var gaveUp = false
    /// Counts outages across the worker's links (metrics).
    var outages: OutageTracker?

    init(address: RedisEndpoint, layout: FeatureStoreLayout, logger: Logger, stopping: @escaping () -> Bool,
         stopNotice: OneTimeNotice, timeout: Duration = .seconds(5)) {
        self.address = address; self.layout = layout; self.logger = logger; self.stopping = stopping
        self.stopNotice = stopNotice; self.timeout = timeout
    }

    func run<T>(_ what: String, _ body: (FeatureStore) throws -> T) throws -> T? {
        var delay = 0.1
        while true {
            do {
                if let c = connection {
                    if !c.isConnected { try c.reconnect() }
                } else {
                    let c = try RedisConnection(address: address, timeout: timeout)
                    connection = c
                    store = FeatureStore(redis: c, layout: layout)
                }
                let value = try body(store)
                if let since = downSince {
                    logger.info("\(String(format: "Redis at %@ is back after %.1f s; resuming", address.description, (.now - since).seconds))")
                    downSince = nil
                    outages?.answered(self)
                }
                return value
            } catch let error as RedisError {
                if error.needsConfiguration { throw error }  // wrong login or TLS: a retry storm would not fix it
                // NOSCRIPT too: a restarted Redis has lost the script cache; the retry loads it again.
                if case .server(let m) = error, !error.isOutage, !m.hasPrefix("NOSCRIPT") { throw error }
                if downSince == nil {
                    downSince = .now
                    outages?.failed(self)
                    logger.warning("Redis unavailable during \(what): \(error). Consumption paused; retrying with back-off (100 ms → 5 s). No data is lost: the uncommitted unit is retried.")
                }
                if stopping() {
                    gaveUp = true
                    stopNotice.say(.init(stringLiteral: "stopping while Redis is unavailable (\(error)): not retrying; everything not committed "
                                   + "(see the progress in Redis) is read again from Kafka on restart — exactly once, nothing lost"), to: logger)
                    return nil
                }
                connection?.close()
                let end = ContinuousClock.now + .seconds(delay)
                while !stopping() && ContinuousClock.now < end { Thread.sleep(forTimeInterval: 0.05) }
                delay = min(delay * 2, 5)
            }
        }
    }
}

/// The lifecycle the committer and the grower share: one thread running `loop()`, a condition
/// guarding the subclass's state, `closing` (finish the work and stop), `finished` (the thread
/// ended) and the first fatal error, which every later call rethrows.
class BackgroundLoop: @unchecked Sendable {
    let condition = NSCondition()
    var closing = false
    var finished = false
    var fatal: Error? = nil

    func start(name: String) {
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.start()
    }

    /// The thread's body; it ends with `end(_:)`.
    func loop() { preconditionFailure("BackgroundLoop.loop is overridden") }

    /// Marks the thread ended (with its failure, if any) and wakes every waiter. Call without the lock.
    func end(_ error: Error? = nil) {
        condition.lock()
        if let error, fatal == nil { fatal = error }
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// Asks the thread to finish its work, waits until it has, and rethrows its failure.
    func finishAndWait() throws {
        condition.lock()
        closing = true
        condition.broadcast()
        while !finished { condition.wait() }
        let f = fatal
        condition.unlock()
        if let f { throw f }
    }
}

struct CommitterReport {
    var rows: Int64, batches: Int64, deadLetters: Int64, duplicates: Int64
    var gaps: [(partition: Int32, progress: Int64)]
    /// Units refused by the fence since the last report: their partition's lease was lost.
    var fenced: [(partition: Int32, token: Int64)]
    var fencedUnits: Int64
    var newIds: Bool
    /// Unknown-category occurrences counted, and the (deduplicated) entries sent to Redis for them.
    var growthOccurrences: Int64
    var growthEntries: Int64
    var inFlight: Int
    var commitSeconds: Double
    var enqueueWaitSeconds: Double
}

/// A unit waiting to be committed, with the unknown-category counts of its rows.
struct PendingCommit {
    var unit: CommitUnit
    var counts: CategoryTable?
}

final class Committer: BackgroundLoop, @unchecked Sendable {
    private let link: RedisLink
    private var queue: [PendingCommit] = []
    private let capacity: Int
    private let logger: Logger
    // Results, read by the worker thread (under `condition`).
    private(set) var rows: Int64 = 0
    private(set) var batches: Int64 = 0
    private(set) var deadLetters: Int64 = 0
    private(set) var duplicates: Int64 = 0
    /// Time spent in Redis commit calls, and time the worker waited for queue space.
    private(set) var commitSeconds: Double = 0
    private(set) var enqueueWaitSeconds: Double = 0
    private var gaps: [(partition: Int32, progress: Int64)] = []
    private var fenced: [(partition: Int32, token: Int64)] = []
    private var fencedUnits: Int64 = 0
    /// Lease tokens whose refusal was already said (one line per lost lease, however many units).
    private var fencedNoticed: Set<Int64> = []
    private var newIds = false
    private var lastCommitAt: ContinuousClock.Instant? = nil
    private var abandoned = false
    private let grower: Grower
    private let metrics: FeaturizeMetrics

    init(address: RedisEndpoint, layout: FeatureStoreLayout, capacity: Int, growthInterval: Duration, maxPendingPerField: Int,
         metrics: FeaturizeMetrics, logger: Logger, stopping: @escaping () -> Bool, stopNotice: OneTimeNotice) {
        self.capacity = capacity
        self.logger = logger
        self.metrics = metrics
        self.link = RedisLink(address: address, layout: layout, logger: logger, stopping: stopping, stopNotice: stopNotice)
        link.outages = metrics.redis
        self.grower = Grower(address: address, layout: layout, every: growthInterval, maxPendingPerField: maxPendingPerField,
                             outages: metrics.redis, logger: logger, stopping: stopping, stopNotice: stopNotice)
        super.init()
        start(name: "featurize-committer")
    }

    /// Queues a unit; blocks while `capacity` units are in flight. Throws a committer failure.
    func enqueue(_ c: PendingCommit) throws {
        condition.lock(); defer { condition.unlock() }
        let t0 = ContinuousClock.now
        while queue.count >= capacity && fatal == nil && !finished { condition.wait() }
        enqueueWaitSeconds += (.now - t0).seconds
        if let fatal { throw fatal }
        if abandoned || finished { return }
        queue.append(c)
        condition.broadcast()
    }

    /// Waits until every queued unit is committed. Returns false when the committer gave up
    /// (stopping while Redis is down); throws its failure.
    func drain() throws -> Bool {
        condition.lock(); defer { condition.unlock() }
        while !queue.isEmpty && fatal == nil && !finished && !abandoned { condition.wait() }
        if let fatal { throw fatal }
        return queue.isEmpty && !abandoned
    }

    /// Commits everything queued, then stops the thread (and the grower's). Throws a failure.
    func close() throws {
        try finishAndWait()
        try grower.finishAndWait()
    }

    /// When the last commit finished (the last rows became visible to trainers), and when the
    /// last growth script finished (growth is a side channel: no row waits for it).
    var lastCommitFinished: ContinuousClock.Instant? { condition.lock(); defer { condition.unlock() }; return lastCommitAt }
    var lastGrowthFinished: ContinuousClock.Instant? { grower.totals.lastGrowAt }

    /// Totals so far and the events the worker must act on (gaps to rewind, new ids to sync).
    func report() throws -> CommitterReport {
        condition.lock(); defer { condition.unlock() }
        if let fatal { throw fatal }
        if try grower.takeNewIds() { newIds = true }
        let growth = grower.totals
        let r = CommitterReport(rows: rows, batches: batches, deadLetters: deadLetters, duplicates: duplicates,
                                gaps: gaps, fenced: fenced, fencedUnits: fencedUnits, newIds: newIds, growthOccurrences: growth.occurrences, growthEntries: growth.entriesSent,
                                inFlight: queue.count,
                                commitSeconds: commitSeconds, enqueueWaitSeconds: enqueueWaitSeconds)
        gaps.removeAll()
        fenced.removeAll()
        newIds = false
        return r
    }

    override func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !closing { condition.wait() }
            let next = queue.isEmpty || abandoned ? nil : queue[0]
            condition.unlock()
            guard let next else { return end() }
            do {
                try process(next)
            } catch {
                return end(error)
            }
            condition.lock()
            queue.removeFirst()
            condition.broadcast()
            condition.unlock()
        }
    }

    private func process(_ c: PendingCommit) throws {
        let u = c.unit
        let outcome: CommitOutcome?
        let t0 = ContinuousClock.now
        defer {
            let dt = ContinuousClock.now - t0
            metrics.commitDuration.recordNanoseconds(dt.components.seconds * 1_000_000_000 + dt.components.attoseconds / 1_000_000_000)
            condition.lock(); commitSeconds += dt.seconds; condition.unlock()
        }
        do {
            outcome = try link.run("commit of \(u.topic)/\(u.partition) [\(u.firstOffset), \(u.lastOffset)]") { try $0.commit(u) }
        } catch FeatureStoreError.gap(_, let p, let progress, _) {
            logger.warning(.init(stringLiteral: "commit gap on \(u.topic)/\(p): Redis progress is \(progress) but the unit starts at \(u.firstOffset) "
                + "(Redis lost recent writes?); rewinding the partition to \(progress) and re-reading"))
            condition.lock(); gaps.append((p, progress)); condition.unlock()
            return
        } catch FeatureStoreError.fenced(_, let p, let token, let owner) {
            // The lease was lost (this worker paused or cut off past the lease time): the unit is
            // NOT written; the partition's new owner reads these offsets again. Said once per lease.
            condition.lock()
            let first = fencedNoticed.insert(token).inserted
            fenced.append((p, token)); fencedUnits += 1
            condition.unlock()
            metrics.fencedUnits.increment()
            if first {
                logger.warning(.init(stringLiteral: "FENCED: unit \(u.topic)/\(p) [\(u.firstOffset), \(u.lastOffset)] not committed — lease token \(token) is no longer "
                    + "valid (partition now \(owner.map { "held by \($0)" } ?? "without an owner")); the new owner re-reads these offsets"))
            }
            return
        }
        guard let outcome else {
            // The link said so (once per worker); the rest of the queue is dropped, to be re-read.
            condition.lock(); abandoned = true; condition.broadcast(); condition.unlock()
            return
        }
        condition.lock()
        lastCommitAt = .now
        switch outcome {
        case .committed:
            if u.rows > 0 { batches += 1; metrics.batches.increment() }
            rows += Int64(u.rows)
            deadLetters += Int64(u.deadLetters.count)
            metrics.rows.increment(by: u.rows)
            metrics.committed(deadLetters: u.deadLetters)
        case .duplicate(let progress):
            duplicates += 1
            metrics.duplicateUnits.increment()
            logger.info("unit \(u.topic)/\(u.partition) [\(u.firstOffset), \(u.lastOffset)] was already committed (progress \(progress)); skipped as a duplicate")
        }
        condition.unlock()
        if let counts = c.counts { grower.add(counts) }
    }

}

/// Online dictionary growth off the commit path: unknown-category counts of committed units are
/// merged here and sent with ONE `growDictionary` script every `every` (repeated categories are
/// counted once), on its own thread and connection, so commits never wait for it. Growth is not
/// part of the exactly-once unit (see FeatureStoreLayout).
final class Grower: BackgroundLoop, @unchecked Sendable {
    private let link: RedisLink
    private var table = CategoryTable(minimumCapacity: 4096)
    private var newIds = false
    /// Unknown-category occurrences received, entries sent to Redis for them, and when the last
    /// growth script finished.
    struct Totals { var occurrences: Int64 = 0, entriesSent: Int64 = 0, lastGrowAt: ContinuousClock.Instant? = nil }
    private var running = Totals()
    var totals: Totals { condition.lock(); defer { condition.unlock() }; return running }
    let every: Duration
    /// Categories per growth script.
    let growChunk = 1024

    let maxPendingPerField: Int

    init(address: RedisEndpoint, layout: FeatureStoreLayout, every: Duration, maxPendingPerField: Int, outages: OutageTracker?,
         logger: Logger, stopping: @escaping () -> Bool, stopNotice: OneTimeNotice) {
        self.every = every
        self.maxPendingPerField = maxPendingPerField
        link = RedisLink(address: address, layout: layout, logger: logger, stopping: stopping, stopNotice: stopNotice)
        link.outages = outages
        super.init()
        start(name: "featurize-grower")
    }

    func add(_ counts: CategoryTable) {
        condition.lock(); defer { condition.unlock() }
        running.occurrences += counts.counts.reduce(0, +)
        for e in 0..<counts.count {
            _ = counts.bytes(at: e).withUnsafeBytes { table.addCount(field: counts.field(at: e), bytes: $0, by: counts.counts[e]) }
        }
    }

    func takeNewIds() throws -> Bool {
        condition.lock(); defer { condition.unlock() }
        if let fatal { throw fatal }
        defer { newIds = false }
        return newIds
    }

    override func loop() {
        while true {
            condition.lock()
            if !closing { _ = condition.wait(until: Date().addingTimeInterval(every.seconds)) }
            let last = closing
            let batch = table
            if table.count > 0 { table = CategoryTable(minimumCapacity: 4096) }
            condition.unlock()
            do {
                // Several short scripts rather than one long one: Redis runs one script at a
                // time, so a long growth script would stall the commits queued behind it.
                var from = 0
                while from < batch.count {
                    let chunk = from..<min(from + growChunk, batch.count)
                    from = chunk.upperBound
                    let assigned = try link.run("dictionary growth", { try $0.growDictionary(batch, entries: chunk, maxPendingPerField: maxPendingPerField) })
                    condition.lock()
                    running.lastGrowAt = .now
                    running.entriesSent += Int64(chunk.count)
                    if assigned?.contains(where: { $0 != nil }) == true { newIds = true }
                    condition.unlock()
                }
            } catch {
                return end(error)
            }
            if last { return end() }
        }
    }
}
