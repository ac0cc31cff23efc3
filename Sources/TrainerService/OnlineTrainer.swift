import Logging
import Foundation
import Synchronization
import Checkpoint
import Cluster
import Features
import FeatureStore
import Metrics
import Models
import Observability
import Streaming
import Training

/// Everything a rank needs to join the training state of a job: broadcast from rank 0 at start
/// (fresh or resumed from a checkpoint) and to every newly admitted rank.
/// The model's parameters and optimizer state follow as one tensor blob (`broadcastState`).
struct ClusterState: Codable {
    /// The model family, its config and sidecar files (`ModelState` without its tensors).
    var kind: String
    var config: JSONValue
    var sidecars: [String: Data]
    var step: Int
    var samplesTrained: Int
    var wallTimeSeconds: Double
    /// Feature shard → last trained stream id.
    var positions: [String: String]
    var shardCount: Int

    init(_ model: ModelState, samplesTrained: Int, wallTimeSeconds: Double, positions: [String: String], shardCount: Int) {
        kind = model.kind; config = model.config; sidecars = model.sidecars; step = model.step
        self.samplesTrained = samplesTrained; self.wallTimeSeconds = wallTimeSeconds; self.positions = positions; self.shardCount = shardCount
    }
}

/// Trainer-side Redis keys (beside the feature store's `FeatureStoreLayout`).
public struct TrainerKeys: Sendable {
    public let prefix: String
    public init(prefix: String) { self.prefix = prefix }
    /// The MPI port rank 0 accepts joiners on (MPI_Open_port), published for `--join`.
    public var port: String { "\(prefix):train:port" }
    /// Joiners waiting to be accepted (INCR by a joiner, DECR by rank 0 after accepting).
    public var joiners: String { "\(prefix):train:joiners" }
    /// Rank 0's heartbeat: JSON with step, samples, ranks, shard assignment.
    public var status: String { FeatureStoreLayout(prefix: prefix).trainerStatus }
}

public struct OnlineTrainerOptions: Sendable {
    public var redisAddress: RedisEndpoint
    public var prefix = "sr"
    public var shardCount = 8
    public var checkpointDir: URL
    public var untilIdle: Double?
    /// A collective that has not completed for this long ends the rank (a peer's host lost or cut
    /// off); nil = wait forever. See `CollectiveWatchdog`.
    public var peerTimeout: Duration? = .seconds(60)
    /// Resume from the newest checkpoint in `checkpointDir` if there is one.
    public var resume = true
    /// Accept dynamically joining ranks (rank 0 opens an MPI port and publishes it in Redis).
    public var acceptJoins = true
    /// Rank 0 appends one JSON line per trained batch and per written checkpoint here
    /// (produced/appended/trained/written times) for `bench freshness`.
    public var freshnessLog: URL?
    public init(redisAddress: RedisEndpoint, checkpointDir: URL) {
        self.redisAddress = redisAddress
        self.checkpointDir = checkpointDir
    }
}

/// The resident MPI online trainer: reads feature shards from Redis, trains data-parallel,
/// replicates stream positions every step, checkpoints on rank 0, admits joining ranks and lets
/// ranks leave at step boundaries. One instance per rank, driven by the MPI-owning thread.
public final class OnlineTrainer: StepBoundaryHandler {
    public let options: OnlineTrainerOptions
    let settings: TrainSettings
    let keys: TrainerKeys
    let redis: RedisConnection
    let reader: FeatureStreamReader
    let store: FeatureStore
    let collectives: MPICollectives
    var comm: Communicator
    var port: String?
    let source: RedisBatchSource
    /// This rank's replica (identical on every rank).
    public let model: any TrainableModel
    /// Wide&Deep's dictionary, kept in step with online growth for its checkpoints.
    var dictionary: DictionaryCache?
    var behaviorKeys = BehaviorKeySync()
    let logger: Logger
    var state: ClusterState
    var freshness: FreshnessLog?
    /// Event produced → trained, per trained batch (rank 0; a no-op without a metrics backend).
    let freshnessSeconds = Recorder(label: Metric.trainerFreshness.name)
    /// Joiners admitted whose DECR of sr:train:joiners has not reached Redis yet (rank 0).
    var undecrementedJoiners = 0
    /// Rank 0's history points not yet in Redis (a failed write); written with the next one.
    var historyPending: [TrainerHistoryPoint] = []
    /// History writes that failed (Redis away or refusing): training never waits for them.
    public private(set) var historyWriteFailures = 0
    /// Event → trained of the last step's batches (ms; the largest), rank 0.
    var lastFreshnessMs: Double?
    /// The newest checkpoint version written (set on the writer thread).
    let newestCheckpoint = NewestCheckpoint()
    /// Set by the signal handler: rank 0 stops the job, other ranks leave it.
    public var signalled: () -> Bool = { false }
    public private(set) var trainer: Trainer!
    /// This rank's number in the current communicator (changes when ranks join or leave).
    public var rank: Int { comm.rank }
    public var size: Int { comm.size }

    /// Rank-0-decides start: rank 0 loads the newest checkpoint (or builds a fresh model of
    /// `kind` from its `config` section and `sidecars`, e.g. Wide&Deep's statistics file) and
    /// broadcasts the state; every rank returns ready to run.
    public static func start(world: Communicator, kind: String, config: JSONValue, sidecars: [String: Data], settings: TrainSettings,
                             options: OnlineTrainerOptions, logger: Logger) throws -> OnlineTrainer {
        var state: ClusterState?
        var model: (any TrainableModel)?
        if world.rank == 0 {
            let ckpts = CheckpointStore(directory: options.checkpointDir, keep: settings.keepCheckpoints)
            if options.resume, let latest = try resumableCheckpoint(in: ckpts) {
                let manifest = try CheckpointStore.loadManifest(latest)
                let loaded = try ModelFamilies.loadTrainable(latest, batchSize: settings.batchSize)
                logger.info("resuming from \(latest.path): step \(manifest.step), \(manifest.samplesTrained) samples, positions \(manifest.streamPositions.sorted { $0.key < $1.key })")
                model = loaded
                state = ClusterState(loaded.exportState(), samplesTrained: manifest.samplesTrained, wallTimeSeconds: manifest.wallTimeSeconds,
                                     positions: manifest.streamPositions, shardCount: options.shardCount)
            } else {
                let fresh = try ModelFamilies.fresh(kind: kind, config: config, sidecars: sidecars, batchSize: settings.batchSize)
                model = fresh
                state = ClusterState(fresh.exportState(), samplesTrained: 0, wallTimeSeconds: 0, positions: [:], shardCount: options.shardCount)
            }
        }
        let (s, m) = try broadcastState(state, model: model, root: 0, over: world, batchSize: settings.batchSize)
        return try OnlineTrainer(comm: world, state: s, model: m, settings: settings, options: options, logger: logger)
    }

    /// The version a resume starts from: the newest usable version (nil when the directory holds
    /// none: a fresh start). That is normally the one LATEST names; after a crash between a
    /// version's rename and the LATEST update it is the newer one. Throws when LATEST itself is
    /// unreadable or a version newer than the newest usable one is broken: resuming from an older
    /// one would later collide with the broken one's step number (versions are never rewritten),
    /// so a person has to look.
    public static func resumableCheckpoint(in store: CheckpointStore) throws -> URL? {
        let versions = store.list()
        guard !versions.isEmpty else { return nil }
        _ = try store.latestVersion()   // LATEST, if present, must name a version inside the root
        guard let newest = versions.last(where: { $0.problem == nil && (try? store.version(named: $0.url.lastPathComponent)) != nil }) else {
            let problem = versions.last.flatMap(\.problem) ?? "no usable manifest"
            throw CheckpointLoadError("""
                \(store.directory.path) holds \(versions.count) checkpoint version(s) but none is usable (newest \
                \(versions.last!.url.lastPathComponent): \(problem)). Run `streamrec ckpt verify \(store.directory.path)`; \
                move the broken versions away to start fresh, or use a new --checkpoint-dir
                """)
        }
        if let broken = versions.last(where: { $0.step > newest.step }) {
            throw CheckpointLoadError("""
                \(broken.url.lastPathComponent) in \(store.directory.path) is newer than the newest usable version \
                \(newest.url.lastPathComponent) but broken (\(broken.problem ?? "outside the checkpoints root")); resuming from \
                \(newest.url.lastPathComponent) would collide with it. Run `streamrec ckpt verify \(store.directory.path)` \
                and move it away to resume from \(newest.url.lastPathComponent)
                """)
        }
        return newest.url
    }

    /// A dynamically joining rank: waits for the job's port in Redis, connects, and receives the
    /// state. Launch with its own `mpirun -np 1 --ompi-server file:URI`.
    public static func join(settings: TrainSettings, options: OnlineTrainerOptions, timeout: Double = 120,
                            logger: Logger) throws -> OnlineTrainer {
        let keys = TrainerKeys(prefix: options.prefix)
        let redis = try RedisConnection(address: options.redisAddress)
        let deadline = Date().addingTimeInterval(timeout)
        var port: String?
        while port == nil {
            port = try redis.command(["GET", keys.port]).text
            if port == nil {
                guard Date() < deadline else { throw CheckpointLoadError("no training job published an MPI port in \(keys.port) within \(Int(timeout))s") }
                usleep(200_000)
            }
        }
        logger.info("joining the training job at MPI port \(port!)")
        try redis.command(["INCR", keys.joiners])
        let me = try MPI.selfCommunicator()
        let inter = try me.connect(port: port!, root: 0)
        let merged = try inter.merge(high: true)
        try inter.disconnect()
        let (s, m) = try broadcastState(nil, model: nil, root: 0, over: merged, batchSize: settings.batchSize)
        logger.info("joined as rank \(merged.rank) of \(merged.size) at step \(s.step)")
        return try OnlineTrainer(comm: merged, state: s, model: m, settings: settings, options: options, logger: logger)
    }

    init(comm: Communicator, state: ClusterState, model: any TrainableModel, settings: TrainSettings,
         options: OnlineTrainerOptions, logger: Logger) throws {
        self.comm = comm
        MPI.setJobCommunicator(comm)
        self.state = state
        self.model = model
        self.settings = settings
        self.options = options
        self.logger = logger
        keys = TrainerKeys(prefix: options.prefix)
        redis = try RedisConnection(address: options.redisAddress)
        reader = FeatureStreamReader(redis: redis, prefix: options.prefix, streams: model.batchKind)
        store = FeatureStore(redis: redis, prefix: options.prefix)
        collectives = MPICollectives(communicator: comm)
        if let wideDeep = model as? WideDeepTraining { dictionary = DictionaryCache(snapshot: wideDeep.stats) }
        var positions: [Int: StreamPosition] = [:]
        for (k, v) in state.positions { if let s = ShardAssignment.shard(fromKey: k), let p = StreamPosition(v) { positions[s] = p } }
        if comm.rank == 0, let url = options.freshnessLog { freshness = try FreshnessLog(url: url) }
        source = RedisBatchSource(reader: reader, shardCount: state.shardCount,
                                  shards: ShardAssignment.shards(rank: comm.rank, size: comm.size, shardCount: state.shardCount),
                                  positions: positions, redisAddress: options.redisAddress.description, logger: logger)
    }

    /// Trains until stopped (SIGTERM on rank 0), idle for `untilIdle`, or this rank leaves.
    public func run() throws -> TrainSummary {
        if comm.rank == 0 && options.acceptJoins {
            port = try MPI.openPort()
            try redis.command(["SET", keys.port, port!])
            try redis.command(["SET", keys.joiners, "0"])
        }
        defer {
            if let port, comm.rank == 0 {
                _ = try? redis.command(["DEL", keys.port])
                try? MPI.closePort(port)
            }
        }
        let store = CheckpointStore(directory: options.checkpointDir, keep: settings.keepCheckpoints)
        if let wideDeep = model as? WideDeepTraining, dictionary != nil {
            // Ids grown online must be in each checkpoint's features.stats.
            wideDeep.refreshStats = { [unowned self] in
                try dictionary!.sync(self.store)
                return dictionary!.stats
            }
        }
        if let rl = model as? any BehaviorTrainable {
            // The keys of the ids the feature workers assigned, for each checkpoint.
            rl.refreshKeys = { [unowned self] in try behaviorKeys.sync(self.store) }
        }
        let t = Trainer(model: model, settings: settings, source: source, collectives: collectives,
                        store: comm.rank == 0 ? store : nil, samplesTrained: state.samplesTrained,
                        wallTimeBefore: state.wallTimeSeconds, logger: logger)
        trainer = t
        t.positions = state.positions
        t.untilIdle = options.untilIdle
        t.peerTimeout = options.peerTimeout
        t.participantName = { [unowned self] in "rank \(comm.rank)/\(comm.size)" }
        t.stopRequested = { [unowned self] in comm.rank == 0 && signalled() }
        t.boundaryHandler = self
        t.afterStep = { [unowned self] local in try afterStep(local) }
        t.afterCheckpoint = { [unowned self] in updateRetention(store) }
        let freshness = self.freshness, newest = newestCheckpoint
        if comm.rank == 0 { newest.set((try? store.latestVersion())?.lastPathComponent) }
        t.onCheckpointWritten = { step, url in
            newest.set(url.lastPathComponent)
            freshness?.record(["event": "written", "step": step, "version": url.lastPathComponent,
                               "written_ms": Int64(Date().timeIntervalSince1970 * 1000)])
        }
        t.onProgress = { [unowned self] progress in recordHistory(progress) }
        if comm.rank == 0 {
            logger.info("online training on \(comm.size) rank(s): \(state.shardCount) feature shards, assignment \(assignmentDescription())")
            try resetTrainedCounters()
        }
        return try t.run()
    }

    func assignmentDescription() -> String {
        (0..<comm.size).map { r in "rank \(r): \(ShardAssignment.shards(rank: r, size: comm.size, shardCount: state.shardCount))" }
            .joined(separator: ", ")
    }

    // MARK: Per step

    /// Replicates every rank's position (one allgatherv of 5 ints per rank), counts trained
    /// batches for back-pressure, and keeps rank 0's heartbeat fresh.
    func afterStep(_ local: SourcedBatch?) throws {
        var mine: [Int32] = []
        if let local, let (key, id) = local.positions.first, let shard = ShardAssignment.shard(fromKey: key), let pos = StreamPosition(id) {
            let produced = StreamPosition(ms: local.producedAtMs, seq: 0).words
            mine = [Int32(shard)] + pos.words + produced[0..<2]
            // Back-pressure only: during a Redis outage the next trained batch sets it again.
            _ = try source.link.attempt {
                if let n = local.ordinal { try reader.markTrained(shard: shard, through: n) } else { try reader.markTrained(shard: shard, batches: 1) }
            }
        }
        let all = try comm.allgatherv(mine).values
        let trainedMs = Int64(Date().timeIntervalSince1970 * 1000)
        var i = 0
        var stepFreshness: Double?
        while i + 7 <= all.count {
            let shard = Int(all[i]), pos = StreamPosition(words: all[(i + 1)..<(i + 5)])
            if pos > (source.positions[shard] ?? .start) { source.positions[shard] = pos }
            if comm.rank == 0 {
                let produced = StreamPosition(words: all[(i + 5)..<(i + 7)] + [0, 0]).ms
                if produced > 0 {
                    freshnessSeconds.record(Double(max(0, trainedMs - produced)) / 1000)
                    if produced > (trainer.newestEventProducedMs ?? 0) { trainer.newestEventProducedMs = produced }
                }
                // The stream id's ms part is when featurize appended the batch to Redis.
                freshness?.record(["event": "trained", "step": model.step, "shard": shard, "produced_ms": produced,
                                   "appended_ms": pos.ms, "trained_ms": trainedMs])
                // 0: the batch carries no Kafka timestamp.
                if produced > 0 { stepFreshness = max(stepFreshness ?? 0, Double(trainedMs - produced)) }
            }
            i += 7
        }
        if let stepFreshness { lastFreshnessMs = stepFreshness }
        trainer.positions = Dictionary(uniqueKeysWithValues: source.positions.map { (ShardAssignment.key($0.key), $0.value.description) })
        if comm.rank == 0 && model.step % 20 == 0 {
            let status: [String: Any] = ["step": model.step, "samples_trained": trainer.samplesTrained, "ranks": comm.size,
                                         "updated_ms": Int64(Date().timeIntervalSince1970 * 1000),
                                         "positions": trainer.positions]
            if let data = try? JSONSerialization.data(withJSONObject: status, options: [.sortedKeys]) {
                _ = try source.link.attempt { try redis.command(["SET", keys.status, String(decoding: data, as: UTF8.self)]) }
            }
        }
    }

    /// Appends one point to sr:train:history (rank 0, every --log-every steps). A failed write
    /// never stops training: the point waits (with at most 100 others) for the next attempt.
    func recordHistory(_ progress: TrainerProgress) {
        let point = TrainerHistoryPoint(timeMs: Int64(Date().timeIntervalSince1970 * 1000), step: progress.step,
                                        samples: progress.samples, metrics: progress.metrics,
                                        samplesPerSecond: progress.samplesPerSecond, ranks: comm.size,
                                        checkpoint: newestCheckpoint.get(), freshnessMs: lastFreshnessMs, kind: model.kind)
        historyPending.append(point)
        if historyPending.count > 100 { historyPending.removeFirst(historyPending.count - 100) }
        let history = TrainerHistory(layout: reader.layout)
        var failure: String?
        do {
            if try source.link.attempt({ try history.append(historyPending, to: redis) }) != nil {
                historyPending.removeAll()
                return
            }
            failure = "Redis unavailable"
        } catch {
            failure = "\(error)"
        }
        historyWriteFailures += 1
        // One line per run of failures, not one per point.
        if historyPending.count == 1 || historyWriteFailures == 1, let failure {
            logger.warning(.init(stringLiteral: "trainer history: could not write \(history.key) (\(failure)); training continues, "
                + "the points are kept (up to 100) and written with the next one"))
        }
    }

    /// Points every shard's sr:trained:{s} at the entry this lineage has trained up to (rank 0,
    /// at start): after a crash the counter may count batches the lost steps had trained.
    func resetTrainedCounters() throws {
        for shard in 0..<state.shardCount {
            let position = source.positions[shard] ?? .start
            _ = try source.link.attempt {
                if position == .start { try redis.command(["SET", reader.layout.trained(shard), "0"]); return }
                let id = position.description
                guard let entry = try reader.range(shard: shard, from: id, to: id, count: 1).first, entry.id == id,
                      let n = entry.ordinal else { return }   // trimmed, or written before ordinals
                try reader.markTrained(shard: shard, through: n)
            }
        }
    }

    /// Lets featurize trim stream entries every live checkpoint has passed: per shard, the
    /// position recorded by the oldest checkpoint still kept (rank 0, after each checkpoint).
    func updateRetention(_ store: CheckpointStore) {
        guard let oldest = store.list().first(where: { $0.manifest != nil })?.manifest else { return }
        for (key, id) in oldest.streamPositions {
            guard let shard = ShardAssignment.shard(fromKey: key) else { continue }
            _ = try? reader.setRetain(shard: shard, id: id)
        }
    }

    // MARK: StepBoundaryHandler

    public func joinersWaiting() -> Int {
        guard port != nil, !source.link.isDown else { return 0 }
        // An admitted joiner whose DECR failed (Redis away) must not be admitted twice: rank 0
        // would wait in MPI_Comm_accept for a connect that never comes.
        while undecrementedJoiners > 0, (try? redis.command(["DECR", keys.joiners])) != nil { undecrementedJoiners -= 1 }
        guard undecrementedJoiners == 0, let reply = try? redis.command(["GET", keys.joiners]) else { return 0 }
        let n = reply.integer ?? Int64(reply.text ?? "0") ?? 0
        return n > 0 ? 1 : 0
    }

    public func wantsToLeave() -> Bool { comm.rank != 0 && signalled() }

    public func handle(_ agreed: StepSignals, trainer: Trainer) throws -> BoundaryOutcome {
        if agreed.leaving > 0 {
            let leaving = wantsToLeave()
            let old = comm
            let next = try old.split(color: leaving ? nil : 0, key: Int32(old.rank))
            // The old communicator is left as it is: MPI_Comm_disconnect of a communicator that
            // spans two mpirun jobs hangs in Open MPI 4.1's PMIx fence, and nobody uses it again.
            if leaving {
                // The digest lets anyone check the replicas agreed up to the moment it left.
                logger.info(.init(stringLiteral: String(format: "rank %d leaves the job at step %d (parameters fnv1a64=%016llx); its shards go to the remaining ranks",
                           old.rank, model.step, model.parameterDigest)))
                return .left
            }
            comm = next!
            MPI.setJobCommunicator(comm)
            collectives.reset(communicator: comm)
            source.reassign(ShardAssignment.shards(rank: comm.rank, size: comm.size, shardCount: state.shardCount))
            if comm.rank == 0 {
                logger.info(.init(stringLiteral: String(format: "%d rank(s) left at step %d (parameters fnv1a64=%016llx); now %d: %@", agreed.leaving, model.step,
                           model.parameterDigest, comm.size, assignmentDescription())))
            }
            return .changed
        }
        if agreed.joinWaiting > 0 {
            let old = comm
            let inter = try old.accept(port: port ?? "", root: 0)
            let merged = try inter.merge(high: false)
            try inter.disconnect()
            if !old.isPredefined { try old.disconnect() }
            comm = merged
            MPI.setJobCommunicator(comm)
            collectives.reset(communicator: comm)
            if comm.rank == 0, try source.link.attempt({ try redis.command(["DECR", keys.joiners]) }) == nil { undecrementedJoiners += 1 }
            // The newcomer gets the whole state: parameters, optimizer state, step, positions.
            let snapshot = ClusterState(model.exportState(), samplesTrained: trainer.samplesTrained,
                                        wallTimeSeconds: trainer.wallTimeBefore, positions: trainer.positions, shardCount: state.shardCount)
            _ = try broadcastState(comm.rank == 0 ? snapshot : nil, model: comm.rank == 0 ? model : nil, root: 0, over: comm,
                                   batchSize: settings.batchSize)
            source.reassign(ShardAssignment.shards(rank: comm.rank, size: comm.size, shardCount: state.shardCount))
            if comm.rank == 0 { logger.info("rank \(comm.size - 1) joined at step \(model.step); now \(comm.size) ranks: \(assignmentDescription())") }
            return .changed
        }
        return .unchanged
    }
}

/// Broadcasts the cluster state and the model from `root` (which passes both; the others pass
/// nil): the header as JSON, then parameters and optimizer state as one tensor blob, so ranks on
/// other hosts need no shared filesystem. Every rank returns an identical model.
func broadcastState(_ state: ClusterState?, model: (any TrainableModel)?, root: Int, over comm: Communicator,
                    batchSize: Int) throws -> (ClusterState, any TrainableModel) {
    var header: [UInt8] = []
    var blob: [UInt8] = []
    if comm.rank == root {
        guard let state, let model else { throw CheckpointLoadError("broadcastState: the root must pass its state and model") }
        header = Array(try JSONEncoder().encode(state))
        blob = ModelTensor.serialize(model.exportState().tensors)
    }
    header = try comm.broadcast(bytes: header, root: root)
    blob = try comm.broadcast(bytes: blob, root: root)
    let s = try JSONDecoder().decode(ClusterState.self, from: Data(header))
    if comm.rank == root, let model { return (s, model) }
    let restored = try ModelFamilies.restore(ModelState(kind: s.kind, config: s.config, sidecars: s.sidecars,
                                                        tensors: try ModelTensor.deserialize(blob), step: s.step), batchSize: batchSize)
    return (s, restored)
}

/// Broadcasts a Wide&Deep model's whole state (parameters, optimizer state, step) from `root`,
/// which passes its model (the others pass nil); every rank returns an identical model.
public func broadcastModel(_ model: WideDeepModel?, config: WideDeepConfig, root: Int, over comm: Communicator) throws -> WideDeepModel {
    var blob: [UInt8] = []
    if comm.rank == root {
        guard let model else { throw CheckpointLoadError("broadcastModel: the root must pass its model") }
        blob = ModelTensor.serialize(model.exportTensors(includeOptimizer: true))
        withUnsafeBytes(of: Int64(model.step).littleEndian) { blob.append(contentsOf: $0) }
    }
    blob = try comm.broadcast(bytes: blob, root: root)
    if comm.rank == root, let model { return model }
    var step: Int64 = 0
    _ = withUnsafeMutableBytes(of: &step) { blob.suffix(8).copyBytes(to: $0) }
    let tensors = try ModelTensor.deserialize(Array(blob.dropLast(8)))
    return try WideDeepModel.load(config: config, tensors: Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0) }),
                                  step: Int(Int64(littleEndian: step)))
}

/// Append-only JSON lines, one per event, flushed as written (rank 0 only).
final class FreshnessLog: @unchecked Sendable {
    private let handle: FileHandle
    private let lock = NSLock()

    init(url: URL) throws {
        if !FileManager.default.fileExists(atPath: url.path) { FileManager.default.createFile(atPath: url.path, contents: nil) }
        handle = try FileHandle(forWritingTo: url)
        handle.seekToEndOfFile()
    }

    func record(_ fields: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        lock.withLock { handle.write(data + Data("\n".utf8)) }
    }
}

/// The newest checkpoint version written, shared between the writer thread and the trainer.
final class NewestCheckpoint: Sendable {
    private let value = Mutex<String?>(nil)
    func set(_ name: String?) { value.withLock { $0 = name } }
    func get() -> String? { value.withLock { $0 } }
}
