// FeaturizeEngine: Kafka partitions → parsed, encoded feature batches → Redis feature store, for
// any input kind: the kind-specific part is a `Featurizer` (`CriteoFeaturizer` for Criteo rows,
// `BehaviorFeaturizer` for behaviour events); `FeaturizeWorker` is the Criteo engine.
//
// Purpose and limits
//   * Owns partitions of one topic by lease (`PartitionLeases`): by default a fair share of them,
//     rebalanced as workers come and go (a dead worker's partitions are taken over once its
//     leases expire); with `--shard k --shards K` the fixed set p ≡ k (mod K), waiting as a
//     standby while another worker holds them. Each partition resumes from its progress in Redis
//     (never from Kafka committed offsets); every commit carries the lease's fencing token, so a
//     worker that lost a lease commits nothing more of that partition.
//   * Per partition it builds one commit unit at a time: up to B valid rows (encoded with the
//     local dictionary cache), the dead letters of the rows refused in between, and rows lost
//     upstream. A unit is committed when it holds B rows, or `linger` after it started (freshness),
//     or at shutdown; one Lua script writes it atomically with the partition's new progress.
//   * The featurizer seals a unit into its batch and its state writes (e.g. behaviour user
//     states), committed in the same script; unknown-category counts go to the grower.
//   * Redis failures: stop consuming, retry the same call with back-off 100 ms → 5 s, log each
//     outage once and its end; the progress check makes retried commits idempotent.
//   * Back-pressure: before polling, if any target stream has ≥ maxPending batches not yet
//     trained, the worker pauses (logs once per pause) until it drops.
//
// Threading rule: one thread runs `run()` and owns the consumer, the Redis connection and all
// state. `stop()` may be called from any thread (or a signal handler via `shouldStop`).

import Logging
import Observability
import Features
import FeatureStore
import Foundation
import Streaming
import Synchronization

public struct FeaturizeOptions: Sendable {
    /// How the worker finds its partitions.
    public enum Assignment: String, Sendable {
        /// A fair share of the topic's partitions among the live workers, by lease (the CLI's
        /// default; `FeaturizeOptions.leased`).
        case lease
        /// The fixed set p ≡ shard (mod shards), still by lease (a second worker with the same
        /// shard waits as a standby instead of committing over the first).
        case fixed
    }
    public var assignment: Assignment = .fixed
    /// How long a lease lasts without renewal (renewed every second): a worker that stops
    /// renewing loses its partitions this long after its last heartbeat.
    public var leaseTime: Duration = .seconds(5)
    public var shard: Int
    public var shards: Int
    public var topic: String
    public var kafka: KafkaConfig
    public var redisAddress: RedisEndpoint
    public var prefix: String = "sr"
    public var batchSize: Int = 1000
    public var linger: Duration = .milliseconds(200)
    /// How long unknown-category counts are merged locally before one round of growth scripts:
    /// longer merges more repeats of the long tail (less Redis work) but gives new ids later.
    public var growthInterval: Duration = .milliseconds(1000)
    /// Bound on the below-threshold category counts kept per field in Redis (sr:dict:pending:{f});
    /// beyond it the rarest-scanned counts are forgotten (lossy counting). 0 = unbounded.
    public var maxPendingCategories: Int = 250_000
    public var maxPending: Int64 = 256
    public var featureShards: Int = 8
    /// Threads that parse and encode (each owns a share of the partitions). 1 = the poll thread only.
    public var parseThreads: Int = 1
    /// Consume and count only (the raw-consume ceiling for the benchmark).
    public var raw: Bool = false
    /// Stop (after committing everything) once no message arrived for this long.
    public var untilIdle: Duration? = nil
    public var statsSource: String = "features.stats"
    public var workerId: String
    public var progressEvery: Duration = .seconds(5)
    /// What to do with a partition whose stored progress is beyond the broker's high watermark.
    public var onOffsetReset: OffsetResetPolicy = .stop

    public init(shard: Int, shards: Int, topic: String, kafka: KafkaConfig, redisAddress: RedisEndpoint, workerId: String? = nil) {
        self.shard = shard; self.shards = shards; self.topic = topic; self.kafka = kafka; self.redisAddress = redisAddress
        let host = ProcessInfo.processInfo.hostName
        self.workerId = workerId ?? "featurize-\(shard)of\(shards)@\(host):\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// A worker that takes a fair share of the partitions by lease (`Assignment.lease`).
    public static func leased(topic: String, kafka: KafkaConfig, redisAddress: RedisEndpoint, workerId: String? = nil) -> FeaturizeOptions {
        let id = workerId ?? "featurize@\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier)"
        var o = FeaturizeOptions(shard: 0, shards: 1, topic: topic, kafka: kafka, redisAddress: redisAddress, workerId: id)
        o.assignment = .lease
        return o
    }
}

/// A partition whose stored progress (next offset, in Redis) is beyond the broker's high watermark:
/// the topic was recreated, the cluster replaced or its offsets reset. Reading on would skip every
/// offset below the stored progress without a word, so the worker never does that.
public enum OffsetResetPolicy: String, Sendable, CaseIterable {
    /// Stop (exit non-zero) naming the partitions, their progress and the broker's watermarks;
    /// nothing of those partitions is read. The default: the operator decides.
    case stop
    /// Move the partitions' progress back to the broker's earliest offset (logged, counted in
    /// sr:offsetreset:applied) and read everything the broker has.
    case restartFromEarliest = "restart-from-earliest"
}

/// An offset reset found on one partition (see `OffsetResetPolicy`).
public struct OffsetResetFinding: Sendable, Equatable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    /// The stored progress (next offset the worker would read).
    public var progress: Int64
    /// The broker's watermarks, when it answered a query in time.
    public var watermarks: KafkaWatermarks?

    public var description: String {
        "\(topic)/\(partition): stored progress \(progress), broker "
            + (watermarks.map { "low \($0.low) high \($0.high)" } ?? "reset the consumer below it (watermarks unavailable)")
    }
}

public enum FeaturizeError: Error, Sendable, CustomStringConvertible {
    /// Options that cannot work (checked before anything starts).
    case invalidOptions(String)
    /// Stopped by the default `OffsetResetPolicy.stop`.
    case offsetReset([OffsetResetFinding])

    public var description: String {
        switch self {
        case .invalidOptions(let m): return m
        case .offsetReset(let findings):
            return "OFFSET RESET: the broker's offsets are behind the progress stored in Redis on \(findings.count) partition(s) — "
                + findings.map(\.description).joined(separator: "; ")
                + ". The topic was recreated, the Kafka cluster replaced or its offsets reset; reading on would skip every "
                + "offset below the stored progress, so nothing of these partitions was read (counted in sr:offsetreset:detected). "
                + "To read them from the broker's earliest offset, run featurize again with --on-offset-reset restart-from-earliest; "
                + "if the old cluster is coming back, point --bootstrap at it instead."
        }
    }
}

/// Totals of one run (also printed as the final JSON line of `streamrec featurize`).
public struct FeaturizeSummary: Sendable, Codable, Equatable {
    public var worker: String
    public var partitions: [Int32]
    public var messages: Int64 = 0
    public var rows: Int64 = 0
    public var batches: Int64 = 0
    public var deadLetters: Int64 = 0
    public var lostUpstream: Int64 = 0
    /// Partitions whose progress was moved back to the broker's earliest offset (offset reset).
    public var offsetResets: Int64 = 0
    public var duplicateUnits: Int64 = 0
    /// Leases taken (at start and by takeover), lost (expired or taken while this worker did not
    /// renew) and given back to rebalance; units refused by the fence (their lease was lost).
    public var leasesAcquired: Int64 = 0
    public var leasesLost: Int64 = 0
    public var leasesReleased: Int64 = 0
    public var fencedUnits: Int64 = 0
    public var onlineIdsLearnt: Int64 = 0
    /// Occurrences of categories missing from the cache, and the entries sent to Redis to count
    /// them (occurrences merged per category over each growth interval).
    public var growthOccurrences: Int64 = 0
    public var growthEntries: Int64 = 0
    /// How long the last growth script finished after the last commit (not part of activeSeconds:
    /// no row waits for growth).
    public var growthTailSeconds: Double = 0
    public var seconds: Double = 0
    public var rowsPerSecond: Double = 0
    public var messagesPerSecond: Double = 0
    /// From the first message received to the last message handled (and, unless raw, to the last
    /// batch committed): the time the worker was busy, excluding start-up and idle waiting.
    public var activeSeconds: Double = 0
    /// From the first message received to the last one handled (activeSeconds minus the commit tail).
    public var consumeSeconds: Double = 0
    /// rows (or messages, in raw mode and for behaviour events) ÷ activeSeconds.
    public var activeRate: Double = 0
    /// Peak resident memory of this process (VmHWM in /proc/self/status).
    public var maxRSSBytes: Int64 = 0
    /// CPU time of the whole process (all threads, user + system).
    public var cpuSeconds: Double = 0
    /// Time the committer spent in Redis commit calls, and time the worker waited for it.
    public var commitSeconds: Double = 0
    public var commitWaitSeconds: Double = 0
    /// Where the worker thread's wall time went: blocked in/consuming from librdkafka (poll minus
    /// handling), parsing/encoding/packing messages (`handle`, includes enqueue waits of full
    /// units), and linger flushes (includes their enqueue waits); polls that returned nothing.
    public var pollSeconds: Double = 0
    public var handleSeconds: Double = 0
    public var flushSeconds: Double = 0
    public var emptyPolls: Int64 = 0
    /// Broker-thread wake-ups sent because the consumer queue ran low (see `wakeFetcher`).
    public var wakeups: Int64 = 0
    /// The worker thread's own Redis calls (heartbeat, back-pressure, dictionary sync, retention).
    public var redisSeconds: Double = 0
    public var raw: Bool = false
}

/// One owned partition: its offsets and the unit being built (the featurizer's part in `unit`).
final class PartitionState<Unit: AnyObject> {
    let partition: Int32
    let shard: Int
    /// The fencing token of this worker's lease on the partition (nil in raw mode: no Redis).
    let leaseToken: Int64?
    var tracker: OffsetTracker
    let batchSize: Int
    let unit: Unit
    // The unit in progress.
    var unitFirst: Int64
    var deadLetters: [DeadLetter] = []
    var lost: Int64 = 0
    var producedAtMs: Int64 = 0
    var startedAt: ContinuousClock.Instant? = nil
    /// After a rewind: ignore messages until the one at `tracker.next` arrives.
    var rewinding = false
    /// The first offset delivered below our position (not rewinding): an offset reset waiting for the worker
    /// thread; the partition's messages are ignored until it is resolved.
    var resetSeenAt: Int64? = nil

    init(partition: Int32, shard: Int, next: Int64, batchSize: Int, unit: Unit, leaseToken: Int64?) {
        self.partition = partition
        self.shard = shard
        self.leaseToken = leaseToken
        self.tracker = OffsetTracker(next: next)
        self.batchSize = batchSize
        self.unit = unit
        unitFirst = next
    }

    var hasUnit: Bool { tracker.next > unitFirst || lost > 0 }

    /// Starts the next unit's bookkeeping (the featurizer resets its part in `seal` or `load`).
    func resetUnit() {
        unitFirst = tracker.next
        deadLetters.removeAll(keepingCapacity: true)
        lost = 0
        producedAtMs = 0
        startedAt = nil
    }
}

/// The Criteo feature worker (`streamrec featurize --kind criteo`).
public typealias FeaturizeWorker = FeaturizeEngine<CriteoFeaturizer>

extension FeaturizeEngine where F == CriteoFeaturizer {
    public convenience init(options: FeaturizeOptions, stats: FeatureStats,
                            shouldStop: (@Sendable () -> Bool)? = nil,
                            logger: Logger = Logger(label: "featurize")) {
        self.init(options: options, featurizer: CriteoFeaturizer(stats: stats, statsSource: options.statsSource),
                  shouldStop: shouldStop, logger: logger)
    }
}

public final class FeaturizeEngine<F: Featurizer>: @unchecked Sendable {
    public let options: FeaturizeOptions
    let featurizer: F
    let stopFlag = Atomic<Bool>(false)
    let shouldStop: (@Sendable () -> Bool)?
    let logger: Logger
    let metrics: FeaturizeMetrics

    // Owned by the run thread.
    var link: RedisLink!
    var store: FeatureStore!
    var committer: Committer!
    var consumer: KafkaConsumer!
    var states: [Int32: PartitionState<F.Partition>] = [:] { didSet { indexStates() } }
    /// `states` indexed by partition number, for the per-message lookup.
    var stateByPartition: [PartitionState<F.Partition>?] = []
    /// The featurizer's part of each, for `prepare`.
    var unitByPartition: [F.Partition?] = []

    func indexStates() {
        var index = [PartitionState<F.Partition>?](repeating: nil, count: Int(states.keys.max() ?? -1) + 1)
        var thread = [Int](repeating: -1, count: index.count)
        for (k, p) in states.keys.sorted().enumerated() {
            index[Int(p)] = states[p]
            thread[Int(p)] = k % max(1, options.parseThreads)
        }
        stateByPartition = index
        unitByPartition = index.map { $0?.unit }
        threadOfPartition = thread
        summary.partitions = states.keys.sorted()
        metrics.leasesHeld.record(states.count)
        updateLag()
    }

    /// Each owned partition's lag: the high watermark librdkafka last learnt (from fetch
    /// responses; no broker call) minus the next offset this worker reads.
    func updateLag() {
        guard let consumer else { metrics.setLag([:]); return }
        var lags: [Int32: Int64?] = [:]
        for st in states.values {
            // Unknown until librdkafka's first fetch response for the partition (no series yet).
            lags[st.partition] = consumer.cachedWatermarks(topic: options.topic, partition: st.partition).map { $0.high - st.tracker.next }
        }
        metrics.setLag(lags)
    }
    var summary: FeaturizeSummary
    /// One per handling thread; thread t handles the partitions with threadOfPartition[p] == t.
    var contexts: [HandlerContext] = []
    var threadOfPartition: [Int] = []
    let handlers: ForkJoin
    /// Handling threads may note a retention gap at the same time.
    let retentionLock = NSLock()
    var firstMessageAt: ContinuousClock.Instant? = nil
    var lastMessageAt: ContinuousClock.Instant? = nil
    /// The last message, or the last time partitions were taken: --until-idle counts from here.
    var lastActivity = ContinuousClock.now
    var syncWanted = false
    var lastNewIdSync = ContinuousClock.now
    var lastWake = ContinuousClock.now
    var kafkaTroubleSince: ContinuousClock.Instant? = nil
    var wakeIndex = 0
    /// Every librdkafka call that asks the broker runs here, never on the worker or parse threads
    /// (librdkafka 2.0.2 can block in them far beyond their timeout while the broker is down).
    let kafkaCalls = OffThreadCalls(name: "featurize-kafka-calls")
    /// The outcome of the last broker query sent by `wakeFetcher`.
    let wakeOutcome = LockedOutcome()
    /// Set when the run must end with an error after its clean stop (offset reset, policy stop).
    var failure: Error? = nil
    /// "Stopping while Redis is unavailable" is said once, by whichever thread gives up first.
    let stopNotice = OneTimeNotice()
    /// Partitions of the topic (known once the broker answered).
    var partitionCount = 0
    /// Fixed-mode partitions another worker holds, already reported (said once each).
    var standbyReported: Set<Int32> = []

    public init(options: FeaturizeOptions, featurizer: F,
                shouldStop: (@Sendable () -> Bool)? = nil,
                logger: Logger = Logger(label: "featurize")) {
        self.options = options
        self.featurizer = featurizer
        self.shouldStop = shouldStop
        // Text lines start with `featurize[WHO]`: the shard in fixed mode, the pid by lease.
        let who = options.assignment == .fixed || options.raw ? "\(options.shard)/\(options.shards)" : "\(ProcessInfo.processInfo.processIdentifier)"
        var logger = logger.tagged("featurize[\(who)]")
        logger[metadataKey: "worker"] = .string(options.workerId)
        self.logger = logger
        self.metrics = FeaturizeMetrics(reasons: F.batchKind == .transitions ? RejectReason.behavior : RejectReason.criteo)
        self.summary = FeaturizeSummary(worker: options.workerId, partitions: [], raw: options.raw)
        let threads = max(1, options.parseThreads)
        contexts = (0..<threads).map { _ in HandlerContext(scratch: featurizer.makeScratch()) }
        handlers = ForkJoin(threads: threads, name: "featurize-parse")
    }

    deinit { handlers.shutdown(); kafkaCalls.close() }

    /// Asks `run()` to commit what it holds and return. Thread-safe.
    public func stop() { stopFlag.store(true, ordering: .relaxed) }

    var stopping: Bool { stopFlag.load(ordering: .relaxed) || (shouldStop?() ?? false) }


    /// Where this kind's batches and counters live.
    var layout: FeatureStoreLayout { FeatureStoreLayout(prefix: options.prefix, streams: F.batchKind) }

    // MARK: Retry funnel

    /// Runs `body` on the worker's own connection through the retry funnel (see `RedisLink`).
    func withRedis<T>(_ what: String, _ body: () throws -> T) throws -> T? {
        let t0 = ContinuousClock.now
        defer { summary.redisSeconds += (ContinuousClock.now - t0).seconds }
        return try link.run(what) { s in store = s; return try body() }
    }

    // MARK: Run

    /// Runs until `stop()`/`shouldStop`, or `untilIdle`. Returns the run's totals.
    @discardableResult
    public func run() throws -> FeaturizeSummary {
        try validate(options)
        let start = ContinuousClock.now
        var kafkaConfig = options.kafka
        if kafkaConfig["auto.offset.reset"] == nil { kafkaConfig["auto.offset.reset"] = "earliest" }
        // librdkafka's prefetch (queued.max.messages.kbytes, default 64 MiB for the consumer queue) is
        // left at its default: librdkafka 2.0 refills a drained queue only when its broker thread
        // next wakes up, so a smaller buffer starves a worker that consumes steadily (measured:
        // 4 MiB → 26k rows/s, 16 MiB → 63k, 64 MiB → 80k on the bench). Lower it with -X to trade
        // throughput for memory.
        consumer = try KafkaConsumer(config: kafkaConfig)
        link = RedisLink(address: options.redisAddress, layout: layout, logger: logger,
                         stopping: { [unowned self] in stopping }, stopNotice: stopNotice)
        link.outages = metrics.redis

        // Partitions (retry until the topic exists and the broker answers).
        var partitionCount = 0
        var delay = 0.1
        var warned = false
        while partitionCount == 0 {
            let consumer = self.consumer!, topic = options.topic
            let answer = kafkaCalls.call(timeout: .seconds(6), stopping: { stopping }) {
                Result { () throws(KafkaError) in try consumer.partitionCount(topic: topic, timeout: .seconds(5)) }
            }
            // No answer at start is an outage too (the metric; the line is said once, here).
            if case .success? = answer { metrics.kafka.answered(self) } else if !stopping { metrics.kafka.failed(self) }
            switch answer {
            case .success(let n)?: partitionCount = n
            case .failure(let error)?:
                if !warned { logger.warning("cannot read metadata of topic \(options.topic) (\(error)); retrying (is the broker up? see `streamrec broker`)"); warned = true }
            case nil:
                if !warned && !stopping { logger.warning("no answer to a metadata request for topic \(options.topic) within 6 s; retrying (is the broker up? see `streamrec broker`)"); warned = true }
            }
            if partitionCount == 0 {
                if stopping { logger.info("stopping before any partition was assigned; nothing was read"); return finish(start) }
                sleepUnlessStopping(delay); delay = min(delay * 2, 5)
            }
        }
        self.partitionCount = partitionCount
        // However the run ends (a clean stop, an offset reset, an error), the partitions are
        // given back at once: the others take them at their next heartbeat instead of waiting
        // for the leases to expire.
        defer { if committer != nil { leaveGroup() } }
        if options.raw {
            // No Redis in raw mode: the fixed share, no leases.
            let owned = fixedPartitions
            if owned.isEmpty { logger.info("topic \(options.topic) has \(partitionCount) partitions; none is ≡ \(options.shard) mod \(options.shards): nothing to do") }
            guard try adopt(owned.map { PartitionLease(partition: $0, token: -1) }) else { return finish(start) }
        } else {
            guard let line = try withRedis("start of the \(F.inputName) featurizer", { try featurizer.start(store) }) else { return finish(start) }
            logger.info("\(line)")
            committer = Committer(address: options.redisAddress, layout: layout, capacity: 4, growthInterval: options.growthInterval,
                                  maxPendingPerField: options.maxPendingCategories, metrics: metrics,
                                  logger: logger, stopping: { [unowned self] in stopping }, stopNotice: stopNotice)
            switch options.assignment {
            case .lease:
                logger.info(.init(stringLiteral: "joins the workers of \(options.topic) (\(partitionCount) partitions) by lease (\(Int(options.leaseTime.seconds)) s); "
                    + "takes a fair share and rebalances as workers come and go"))
            case .fixed:
                if fixedPartitions.isEmpty { logger.info("topic \(options.topic) has \(partitionCount) partitions; none is ≡ \(options.shard) mod \(options.shards): nothing to do") }
            }
            guard try rebalance() else {
                let summary = finish(start)
                if let failure { throw failure }
                return summary
            }
        }
        if !consumerAssigned { try assignAll() }

        lastActivity = .now
        var lastHeartbeat = ContinuousClock.now - .seconds(10)
        var lastProgress = ContinuousClock.now
        var lastProgressRows: Int64 = 0
        var lastPressureCheck = ContinuousClock.now - .seconds(10)
        var lastSync = ContinuousClock.now
        var lastRetention = ContinuousClock.now
        var paused = false
        var lastPollEmpty = true
        var pauseStarted = ContinuousClock.now
        while !stopping && failure == nil {
            let targetShards = Set(states.values.map(\.shard)).sorted()
            let now = ContinuousClock.now
            noteWakeOutcome()
            if !options.raw {
                try collectCommits()
                if now - lastHeartbeat >= .seconds(1) {
                    lastHeartbeat = now
                    if try withRedis("heartbeat", { try heartbeat(paused: paused) }) == nil { break }
                    updateLag()
                    guard try rebalance() else { break }
                }
                if now - lastPressureCheck >= .milliseconds(100) {
                    lastPressureCheck = now
                    guard let pending = try withRedis("back-pressure check", { try store.pending(shards: targetShards) }) else { break }
                    let over = pending.filter { $0.value >= options.maxPending }
                    if !over.isEmpty && !paused {
                        paused = true; pauseStarted = now
                        metrics.paused.record(1)
                        // Commit what we hold so trainers can see it, then pause.
                        try flushAll(force: true)
                        logger.warning("PAUSED (back-pressure): feature shard(s) \(over.keys.sorted().map { "\($0): \(over[$0]!) pending" }.joined(separator: ", ")) ≥ --max-pending \(options.maxPending); waiting for trainers")
                    } else if over.isEmpty && paused {
                        paused = false
                        metrics.paused.record(0)
                        logger.info("\(String(format: "resumed after %.1f s of back-pressure", (now - pauseStarted).seconds))")
                    }
                }
                if now - lastSync >= .seconds(1) {
                    lastSync = now
                    guard let learnt = try withRedis("dictionary sync", { try featurizer.refresh(store) }) else { break }
                    summary.onlineIdsLearnt += Int64(learnt)
                }
                if now - lastRetention >= .seconds(5) {
                    lastRetention = now
                    for s in targetShards { guard try withRedis("retention", { try store.applyRetention(shard: s) }) != nil else { break } }
                }
            }
            if now - lastProgress >= options.progressEvery {
                let dt = (now - lastProgress).seconds
                let counted = options.raw ? summary.messages : summary.rows
                var line = String(format: "%@ %lld (%.0f/s), batches %lld, dead letters %lld, lost upstream %lld",
                                  options.raw ? "messages" : "rows", counted, Double(counted - lastProgressRows) / dt,
                                  summary.batches, summary.deadLetters, summary.lostUpstream)
                if !options.raw, let pending = try? store.pending(shards: targetShards) {
                    line += ", pending " + targetShards.map { "\($0):\(pending[$0] ?? 0)" }.joined(separator: " ")
                }
                if paused { line += " [paused]" }
                logger.info("\(line)")
                lastProgress = now
                lastProgressRows = counted
            }
            if paused {
                Thread.sleep(forTimeInterval: 0.05)
                continue
            }
            var batch = KafkaPollBatch()
            var got = 0
            let tPoll = ContinuousClock.now
            do {
                // librdkafka's batch consume waits until the batch is FULL or the timeout passes, so
                // while data flows ask without waiting; wait only when the queue ran dry. Messages are
                // handled in place (no per-message copies); `handle` copies only dead letters.
                let polled = try consumer.pollBatch(maxMessages: 2048, timeout: lastPollEmpty ? .milliseconds(20) : .zero)
                batch = polled.events
                got = polled.count
                let tHandle = ContinuousClock.now
                if !options.raw && got > 0 {
                    guard try handleAll(polled) else { break }
                    let seen = states.values.filter { $0.resetSeenAt != nil }.sorted { $0.partition < $1.partition }
                    if !seen.isEmpty {
                        let findings = seen.map { st in
                            OffsetResetFinding(topic: options.topic, partition: st.partition, progress: st.tracker.next,
                                               watermarks: queryWatermarks(st.partition, timeout: .seconds(5)))
                        }
                        if try !handleOffsetResets(findings) { break }
                    }
                }
                let tEnd = ContinuousClock.now
                summary.handleSeconds += (tEnd - tHandle).seconds
                summary.pollSeconds += (tHandle - tPoll).seconds
                if got == 0 { summary.emptyPolls += 1 }
                lastPollEmpty = got == 0
                if got < 512 { wakeFetcher() }
            } catch let error as KafkaError {
                logger.warning("Kafka poll failed: \(error); retrying")
                Thread.sleep(forTimeInterval: 0.2)
                continue
            }
            summary.messages += Int64(got)
            metrics.messages.increment(by: got)
            let clientErrors = consumer.takeClientErrors()
            if clientErrors.count > 0 { kafkaTrouble(clientErrors.last ?? "client error") }
            // Consumer errors are part of an outage: one line when it starts, one when it ends —
            // and it ends only when the broker answers a query (`noteWakeOutcome`): messages
            // librdkafka had already queued keep arriving after a broker died.
            if let first = batch.errors.first { kafkaTrouble("\(first.error)") }
            if got > 0 {
                if firstMessageAt == nil { firstMessageAt = tPoll }
            }
            if !options.raw {
                let t = ContinuousClock.now
                try flushAll(force: false)
                summary.flushSeconds += (ContinuousClock.now - t).seconds
            }
            // Idle means no data arrived, not that handling it took long (waiting on Redis).
            if got > 0 { lastMessageAt = .now; lastActivity = .now }
            // A fixed-shard worker standing by for its partitions is waiting, not idle.
            let standingBy = options.assignment == .fixed && !options.raw && states.count < fixedPartitions.count
            if let idle = options.untilIdle, !standingBy, ContinuousClock.now - lastActivity >= idle {
                logger.info("no data for \(idle); stopping (--until-idle)")
                break
            }
        }
        if !options.raw {
            try flushAll(force: true)
            try committer?.close()
            if let committer { applyTotals(try committer.report()) }

        }
        let summary = finish(start)
        if let failure { throw failure }
        return summary
    }

    /// Options that cannot work, as an error that names the option (the CLI checks them earlier;
    /// this guards library callers).
    func validate(_ o: FeaturizeOptions) throws {
        guard o.shards > 0, o.shard >= 0, o.shard < o.shards else {
            throw FeaturizeError.invalidOptions("shard \(o.shard) of \(o.shards): need shards > 0 and 0 ≤ shard < shards (--shard, --shards)")
        }
        guard o.batchSize > 0 else { throw FeaturizeError.invalidOptions("--batch-size must be positive, got \(o.batchSize)") }
        guard o.featureShards > 0 else { throw FeaturizeError.invalidOptions("--feature-shards must be positive, got \(o.featureShards)") }
        guard o.maxPending > 0 else { throw FeaturizeError.invalidOptions("--max-pending must be positive, got \(o.maxPending)") }
    }

    /// Sleeps `seconds` in short steps, returning early once stopping.
    func sleepUnlessStopping(_ seconds: Double) {
        let end = ContinuousClock.now + .seconds(seconds)
        while !stopping && ContinuousClock.now < end { Thread.sleep(forTimeInterval: 0.05) }
    }

    /// The partition's watermarks from the broker, asked on the Kafka-call thread; nil when the
    /// broker did not answer within `timeout` (or the worker is stopping). Never blocks longer.
    func queryWatermarks(_ partition: Int32, timeout: Duration) -> KafkaWatermarks? {
        let consumer = self.consumer!, topic = options.topic
        let ask = timeout > .milliseconds(1500) ? timeout - .seconds(1) : timeout
        let answer = kafkaCalls.call(timeout: timeout, stopping: { stopping }) {
            Result { () throws(KafkaError) in try consumer.watermarks(topic: topic, partition: partition, timeout: ask) }
        }
        if case .success(let w)? = answer, w.high >= 0, w.low >= 0 { return w }
        return nil
    }

    // MARK: Offset resets

    /// Applies `options.onOffsetReset` to partitions whose stored progress is beyond what the
    /// broker has. Returns false when the run must stop (policy `stop`: `failure` is set; or the
    /// worker is stopping while Redis is down).
    func handleOffsetResets(_ findings: [OffsetResetFinding]) throws -> Bool {
        let when = ISO8601DateFormatter().string(from: Date())
        switch options.onOffsetReset {
        case .stop:
            for f in findings {
                logger.error("OFFSET RESET on \(f): not reading this partition (--on-offset-reset stop)")
                guard try withRedis("recording an offset reset", {
                    try store.recordOffsetReset(topic: f.topic, partition: f.partition,
                                                description: "\(when) \(f); stopped (--on-offset-reset stop)")
                }) != nil else { return false }
            }
            failure = FeaturizeError.offsetReset(findings)
            return false
        case .restartFromEarliest:
            // Everything read before the reset is committed first, so progress in Redis is exactly
            // the offset the broker reset us from.
            if committer != nil {
                for f in findings { if let st = states[f.partition] { try commit(st) } }
                guard try committer.drain() else { return false }
                try collectCommits()
            }
            for f in findings {
                guard let st = states[f.partition] else { continue }
                // librdkafka resets to earliest, so a delivered offset below the assignment is the earliest too.
                let earliest = f.watermarks?.low ?? st.resetSeenAt ?? 0
                let from = st.tracker.next
                let line = "\(when) \(f); progress reset \(from) → \(earliest) (--on-offset-reset restart-from-earliest)"
                guard let moved = try withRedis("offset reset", {
                    try store.recordOffsetReset(topic: f.topic, partition: f.partition, description: line)
                    return try store.resetProgress(topic: f.topic, partition: f.partition, from: from, to: earliest, description: line)
                }) else { return false }
                guard moved else {
                    throw FeaturizeError.invalidOptions("OFFSET RESET on \(f): the progress in Redis is no longer \(from) — another "
                        + "featurize worker moved it (its lease on \(f.topic)/\(f.partition) was lost?); run featurize again")
                }
                summary.offsetResets += 1
                metrics.offsetResets.increment()
                logger.warning(.init(stringLiteral: "OFFSET RESET on \(f): progress moved back \(from) → \(earliest); reading the partition again from the broker's "
                    + "earliest offset (counted in \(options.prefix):offsetreset:applied)"))
                st.tracker.rewind(to: earliest)
                st.resetUnit()
                st.resetSeenAt = nil
                st.rewinding = false
                guard try withRedis("reloading partition state", { try featurizer.load(st.unit, topic: options.topic, partition: f.partition, from: store) }) != nil else { return false }
            }
            if consumerAssigned { try assignAll() }
            return true
        }
    }

    /// librdkafka 2.0 stops fetching a partition while the consumer queue is over
    /// queued.min.messages / queued.max.messages.kbytes and re-checks only when its broker thread
    /// next wakes up — up to a second later, with the queue long drained (2.1 made this
    /// `fetch.queue.backoff.ms`). A watermark query is a request through that broker thread, so it
    /// wakes it and fetching resumes at once. Round-robin over owned partitions reaches every
    /// leader of a real cluster; at most one query per 10 ms.
    func wakeFetcher() {
        let now = ContinuousClock.now
        guard !summary.partitions.isEmpty, now - lastWake >= .milliseconds(10) else { return }
        lastWake = now
        wakeIndex = (wakeIndex + 1) % summary.partitions.count
        // The same query tells whether the broker answers at all: librdkafka reconnects by itself,
        // but the operator should hear about an outage (once) and its end (`noteWakeOutcome`).
        // It runs on the Kafka-call thread: while an earlier one is still out, none is sent.
        let consumer = self.consumer!, topic = options.topic, partition = summary.partitions[wakeIndex]
        let outcome = wakeOutcome
        if kafkaCalls.post({
            outcome.set(Result { () throws(KafkaError) in try consumer.watermarks(topic: topic, partition: partition, timeout: .milliseconds(500)) })
        }) { summary.wakeups += 1 }
    }

    /// Reports what the last broker query said, and a query that has not come back for 5 s
    /// (librdkafka blocked inside it) as an outage.
    func noteWakeOutcome() {
        if let r = wakeOutcome.take() {
            switch r {
            case .success: kafkaAnswered()
            case .failure(let e): kafkaTrouble("\(e)")
            }
        }
        if let busy = kafkaCalls.busyFor, busy >= .seconds(5) {
            kafkaTrouble("a broker query has not been answered for \(Int(busy.seconds)) s")
        }
    }

    /// Logs a Kafka outage once (librdkafka reconnects by itself; the operator should still hear).
    func kafkaTrouble(_ what: String) {
        guard kafkaTroubleSince == nil else { return }
        kafkaTroubleSince = .now
        metrics.kafka.failed(self)
        logger.warning(.init(stringLiteral: "Kafka unavailable: \(what). librdkafka keeps reconnecting (back-off up to reconnect.backoff.max.ms); "
            + "consumption resumes where it stopped when the broker is back — nothing is lost"))
    }

    /// Logs the end of an outage: the broker answered a query.
    func kafkaAnswered() {
        guard let since = kafkaTroubleSince else { return }
        kafkaTroubleSince = nil
        metrics.kafka.answered(self)
        logger.info("\(String(format: "Kafka answers again (%.1f s after the outage was reported); consuming", (ContinuousClock.now - since).seconds))")
    }

    func withRedisOnce(_ body: () throws -> Void) throws { try body() }

    func finish(_ start: ContinuousClock.Instant) -> FeaturizeSummary {
        summary.seconds = (ContinuousClock.now - start).seconds
        summary.rowsPerSecond = summary.seconds > 0 ? Double(summary.rows) / summary.seconds : 0
        summary.messagesPerSecond = summary.seconds > 0 ? Double(summary.messages) / summary.seconds : 0
        if let a = firstMessageAt, let m = lastMessageAt, m > a { summary.consumeSeconds = (m - a).seconds }
        // The run's work ends with its last commit (or, in raw mode, its last message), not when
        // --until-idle noticed the silence; growth scripts that end later hold no row back.
        let workEnd = [lastMessageAt, committer?.lastCommitFinished].compactMap { $0 }.max()
        if let grown = committer?.lastGrowthFinished, let done = workEnd, grown > done {
            summary.growthTailSeconds = (grown - done).seconds
        }
        if let a = firstMessageAt, let b = workEnd, b > a {
            summary.activeSeconds = (b - a).seconds
            // Behaviour events: the rate of events (a transition waits for the user's next event).
            summary.activeRate = Double(options.raw || F.batchKind == .transitions ? summary.messages : summary.rows) / summary.activeSeconds
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        // Peak RSS from /proc (VmHWM): ru_maxrss survives execve, so a child forked from a big
        // parent would report the parent's peak.
        summary.maxRSSBytes = Int64(usage.ru_maxrss) * 1024
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
           let kb = Int64(line.split(separator: " ").dropFirst().first ?? "") {
            summary.maxRSSBytes = kb * 1024
        }
        summary.cpuSeconds = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        logger.info(.init(stringLiteral: String(format: "stopped: %lld messages, %lld rows in %lld batches, %lld dead letters, %lld lost upstream, %.1f s (%.0f rows/s)",
                   summary.messages, summary.rows, summary.batches, summary.deadLetters, summary.lostUpstream,
                   summary.seconds, summary.rowsPerSecond)))
        return summary
    }

    var consumerAssigned = false

    func assignAll() throws {
        try consumer.assign(states.values.sorted { $0.partition < $1.partition }.map {
            KafkaAssignment(topic: options.topic, partition: $0.partition, offset: $0.tracker.next)
        })
        consumerAssigned = true
    }

    func heartbeat(paused: Bool) throws {
        var info: [String: Any] = [
            "kind": F.inputName, "assignment": options.assignment.rawValue, "lease_ms": options.leaseTime.milliseconds,
            "topic": options.topic,
            "partitions": summary.partitions.map { Int($0) }, "rows": summary.rows, "batches": summary.batches,
            "dead_letters": summary.deadLetters, "lost": summary.lostUpstream, "paused": paused,
            "pid": Int(ProcessInfo.processInfo.processIdentifier),
        ]
        // Shard numbers mean something only in fixed mode.
        if options.assignment == .fixed { info["shard"] = options.shard; info["shards"] = options.shards }
        try store.heartbeat(worker: options.workerId, info: info)
    }

    /// Counts offsets dropped by retention before we read them — loudly, never silently.
    func noteRetention(_ st: PartitionState<F.Partition>, low: Int64) {
        let from = st.tracker.next
        let lost = st.tracker.retention(lowWatermark: low)
        guard lost > 0 else { return }
        if st.startedAt == nil { st.startedAt = .now }
        st.lost += lost
        retentionLock.withLock { summary.lostUpstream += lost }
        metrics.lostUpstream.increment(by: lost)
        logger.error(.init(stringLiteral: "RETENTION GAP on \(options.topic)/\(st.partition): need offset \(from) but the broker's earliest retained offset is \(low); "
            + "\(lost) rows were LOST UPSTREAM (deleted by Kafka retention before any worker read them). "
            + "Counted in \(options.prefix):lost; continuing at \(low). Increase retention or add featurize workers."))
    }

    // MARK: Per message

    /// Scratch state of one handling thread.
    final class HandlerContext {
        let scratch: F.Scratch
        var messages: [Int] = []
        init(scratch: F.Scratch) { self.scratch = scratch }
    }

    /// Handles a polled batch: each owned partition belongs to one handling thread
    /// (`--parse-threads`), which takes its messages in offset order; threads run at once and
    /// join before the next poll, so everything else (dictionary sync, commits' bookkeeping) sees
    /// a quiet worker.
    /// Returns false when the worker is stopping while Redis is down (the batch is not handled:
    /// nothing of it is committed, so it is read again on restart).
    func handleAll(_ batch: KafkaMessageBatch) throws -> Bool {
        guard try withRedis("preparing a batch", { try featurizer.prepare(batch, partitions: unitByPartition, store: store) }) != nil else { return false }
        for ctx in contexts { ctx.messages.removeAll(keepingCapacity: true) }
        for i in 0..<batch.count {
            let p = Int(batch.partition(i))
            guard p < threadOfPartition.count, threadOfPartition[p] >= 0 else { continue }
            contexts[threadOfPartition[p]].messages.append(i)
        }
        try handlers.run { [self] t in
            let ctx = contexts[t]
            for i in ctx.messages {
                let m = batch.message(i)
                try handle(m, index: i, stateByPartition[Int(m.partition)]!, ctx)
            }
        }
        return true
    }

    func handle(_ m: KafkaMessageView, index: Int, _ st: PartitionState<F.Partition>, _ ctx: HandlerContext) throws {
        // A full unit that could not be committed (stopping while Redis is down): take nothing more.
        if featurizer.rows(st.unit) >= st.batchSize { return }
        // An offset reset waits for the worker thread: nothing of this partition is taken meanwhile.
        if st.resetSeenAt != nil { return }
        switch st.tracker.classify(m.offset) {
        case .duplicate:
            // Below our position while not rewinding: librdkafka only goes back by itself when the
            // broker called the position out of range (topic recreated, cluster replaced) and it
            // reset to earliest — at start or any time later. Reading on would skip everything up
            // to the stored progress; the worker thread decides (`handleOffsetResets`).
            if !st.rewinding { st.resetSeenAt = m.offset }
            return
        case .inOrder: st.rewinding = false
        case .jump where st.rewinding:
            // Still the pre-rewind prefetch, unless the rewind target itself fell out of retention.
            guard let low = lowWatermark(st.partition), low > st.tracker.next else { return }
            st.rewinding = false
            noteRetention(st, low: min(low, m.offset))
            st.tracker.skip(to: m.offset)
        case .jump:
            // Retention, or offsets without messages? Ask the broker.
            let low = lowWatermark(st.partition)
            if let low, low <= st.tracker.next {
                logger.info("offsets \(st.tracker.next)..<\(m.offset) of \(options.topic)/\(st.partition) carry no message (compaction or transaction markers; low watermark \(low)); covering them")
            } else if let low { noteRetention(st, low: min(low, m.offset)) }
            else { logger.warning("offset jump on \(options.topic)/\(st.partition) from \(st.tracker.next) to \(m.offset) and the watermarks are unavailable; treating the missing offsets as lost upstream"); noteRetention(st, low: m.offset) }
            st.tracker.skip(to: m.offset)
        }
        st.tracker.consume(m.offset)
        if st.startedAt == nil { st.startedAt = .now }
        if let ts = m.timestampMs, ts > 0, st.producedAtMs == 0 || ts < st.producedAtMs { st.producedAtMs = ts }
        if let rejection = featurizer.handle(m.value, index: index, into: st.unit, scratch: ctx.scratch) {
            st.deadLetters.append(DeadLetter(raw: Array(m.value), offset: m.offset, reason: rejection.reason.rawValue, detail: rejection.detail))
        } else if featurizer.rows(st.unit) >= st.batchSize {
            try commit(st)
        }
    }

    /// The partition's earliest retained offset: asked of the broker (bounded, off this thread),
    /// else what librdkafka last learnt from a fetch response; nil when neither is known.
    func lowWatermark(_ partition: Int32) -> Int64? {
        queryWatermarks(partition, timeout: .seconds(5))?.low ?? consumer.cachedWatermarks(topic: options.topic, partition: partition)?.low
    }

    // MARK: Commit

    func flushAll(force: Bool) throws {
        let now = ContinuousClock.now
        for st in states.values where st.hasUnit {
            if force || (st.startedAt.map { now - $0 >= options.linger } ?? true) { try commit(st) }
        }
    }

    /// Hands the partition's unit to the committer thread and starts the next unit.
    func commit(_ st: PartitionState<F.Partition>) throws {
        guard st.hasUnit else { return }
        let last = st.tracker.next - 1
        let source = FeatureBatchSource(topic: options.topic, partition: st.partition, firstOffset: st.unitFirst,
                                        lastOffset: last, rejectedRows: st.deadLetters.count, producedAtMs: st.producedAtMs)
        let sealed = featurizer.seal(st.unit, source: source, topic: options.topic, partition: st.partition)
        var unit = CommitUnit(topic: options.topic, partition: st.partition, firstOffset: st.unitFirst, lastOffset: last,
                              shard: st.shard, encodedBatch: sealed.encodedBatch, rows: sealed.rows, deadLetters: st.deadLetters,
                              lostRows: st.lost, worker: options.workerId, stateWrites: sealed.stateWrites)
        unit.leaseToken = st.leaseToken
        try committer.enqueue(PendingCommit(unit: unit, counts: sealed.growth))
        st.resetUnit()
    }

    /// Copies the committer's running totals into the summary.
    func applyTotals(_ r: CommitterReport) {
        summary.rows = r.rows; summary.batches = r.batches; summary.deadLetters = r.deadLetters
        summary.duplicateUnits = r.duplicates
        summary.fencedUnits = r.fencedUnits
        summary.growthOccurrences = r.growthOccurrences; summary.growthEntries = r.growthEntries
        summary.commitSeconds = r.commitSeconds; summary.commitWaitSeconds = r.enqueueWaitSeconds
    }

    /// Applies what the committer reported: totals, partitions to rewind after a gap, new ids.
    func collectCommits() throws {
        let r = try committer.report()
        applyTotals(r)
        // Units refused by the fence: the lease was lost (expired while this worker was paused or
        // cut off, then taken). Drop the partition if we still think we hold that lease; the
        // heartbeat would find out too, a second later.
        let fenced = r.fenced.filter { f in states[f.partition]?.leaseToken == f.token }.map(\.partition)
        if !fenced.isEmpty { try lose(Array(Set(fenced)).sorted(), how: "a commit was refused by its fencing token") }
        if !r.gaps.isEmpty {
            // Every unit still queued behind a gap gaps too (each reporting the same old
            // progress): let them all fail first, then rewind each partition ONCE, to the progress
            // Redis holds now, and reload its state in the same call — a second, stale rewind
            // would apply committed events to the state twice.
            _ = try committer.drain()
            let later = try committer.report()
            applyTotals(later)
            for partition in Set((r.gaps + later.gaps).map(\.partition)).sorted() {
                guard let st = states[partition] else { continue }
                guard let progress = try withRedis("reloading partition state", { () -> Int64 in
                    let progress = try store.readProgress(topic: options.topic, partition: partition)
                    try featurizer.load(st.unit, topic: options.topic, partition: partition, from: store)
                    return progress
                }) else { return }
                st.tracker.rewind(to: progress)
                st.resetUnit()
                st.rewinding = true
            }
            try assignAll()
        }
        // New ids were assigned: tail the log, but at most every 250 ms (growth runs in many short
        // scripts; a sync per script made the worker thread wait on Redis for each).
        if r.newIds { syncWanted = true }
        if syncWanted, ContinuousClock.now - lastNewIdSync >= .milliseconds(250) {
            syncWanted = false
            lastNewIdSync = .now
            if let learnt = try withRedis("dictionary sync", { try featurizer.refresh(store) }) { summary.onlineIdsLearnt += Int64(learnt) }
        }
    }
}

/// The last broker query's outcome, handed from the Kafka-call thread to the worker thread.
final class LockedOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<KafkaWatermarks, KafkaError>? = nil
    func set(_ r: Result<KafkaWatermarks, KafkaError>) { lock.withLock { value = r } }
    func take() -> Result<KafkaWatermarks, KafkaError>? { lock.withLock { defer { value = nil }; return value } }
}

