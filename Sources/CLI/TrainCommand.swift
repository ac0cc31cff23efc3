import Logging
import ArgumentParser
import Foundation
import Featurize
import Checkpoint
import Cluster
import Features
import Models
import Streaming
import StreamRecNumerics
import Training
import TrainerService

enum SourceKind: String, ExpressibleByArgument, CaseIterable {
    case file, redis
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model (Wide&Deep, or REINFORCE on behaviour transitions): one process, or data-parallel MPI ranks under mpirun.",
        discussion: """
        Under `mpirun -np N` (detected from Open MPI's environment, or forced with --mpi) every \
        rank trains on its own batches; dense gradients are summed with one MPI_Allreduce over a \
        fused buffer and sparse embedding rows are exchanged with MPI_Allgatherv, so all replicas \
        stay bit-identical; rank 0 logs and writes checkpoints. With --source file, rank r of N \
        trains on every N-th batch of the file.

        Logs `epoch: E, step: S, wide_loss: …, deep_loss: …` every train.log_every steps with \
        throughput and progressive-validation AUC (each batch scored before it is trained on). \
        Writes a checkpoint (model.safetensors, features.stats, manifest.json) every \
        --checkpoint-every steps, on SIGTERM/SIGINT and at the end, keeping the newest --keep; \
        LATEST names the newest; writing happens in the background. Without --stats the \
        statistics pass runs on the training file first.

        With `model.kind: reinforce` (configs/reinforce.yaml) --data is a behaviour file \
        (user_behavior.csv: user,item,behavior,time), read once through the feature workers' \
        transition rule, and the log line is `epoch: E, step: S, policy_loss: …, beta_loss: …, \
        transitions/s: …, pv_ndcg@10: …`; no statistics file is needed.

        With --source redis every rank resolves the Redis options itself. Ranks on other hosts do \
        not inherit the launching shell's environment: give the password with \
        --redis-password-file (a path that exists on every host) or `mpirun -x STREAMREC_REDIS_PASSWORD`.
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "Where batches come from.") var source: SourceKind = .file
    @Option(help: "Training file (--source file): Criteo TSV, or user_behavior.csv for model.kind reinforce.") var data: String?
    @Option(help: "Feature statistics file from `streamrec stats`.") var stats: String?
    @Option(help: "Directory for checkpoint versions.") var checkpointDir: String = "checkpoints"
    @Option(help: "Override train.epochs.") var epochs: Int?
    @Option(help: "Override train.checkpoint_every (steps).") var checkpointEvery: Int?
    @Option(help: "Override train.keep_checkpoints.") var keep: Int?
    @Option(help: "Override train.log_every (steps).") var logEvery: Int?
    @Option(help: "Override train.min_frequency for the statistics pass.") var minFrequency: Int?
    @Option(help: "Stop once no data has arrived for this many seconds.") var untilIdle: Double?
    @Flag(help: "Run as MPI ranks even if mpirun's environment is not detected.") var mpi = false
    @Option(help: "--source redis: a rank waiting this many seconds in a collective (a peer's host lost or cut off) ends itself, so mpirun ends the job and `streamrec supervise` restarts it. 0 = wait forever.")
    var peerTimeout: Double = 60
    @OptionGroup(title: "Redis (--source redis)") var store: RedisOptions
    @OptionGroup(title: "Logging") var logging: LogOptions
    @OptionGroup(title: "Metrics (rank 0 only)") var metrics: MetricsOptions

    /// The trainer's logger (after `logging.start`): training lines on stdout, the rank as context.
    var logger: Logger {
        var logger = Logger(label: "train")
        if let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] { logger[metadataKey: "rank"] = .string(rank) }
        return logger
    }
    @Option(help: "Feature shards (streams) in the store; must match the featurize workers.") var featureShards: Int = 8
    @Flag(help: "Join a running job (launch with its own `mpirun -np 1 --ompi-server file:URI`).") var join = false
    @Flag(help: "Ignore existing checkpoints and start a new model (--source redis resumes by default).") var fresh = false
    @Option(help: "Rank 0 appends per-batch and per-checkpoint timing lines here (for bench freshness).") var freshnessLog: String?
    @Option(help: "Behaviour file (--data, RL models): rewards per transition W, as the feature workers' behavior.reward_window (default 1; the config's behavior.reward_window).")
    var rewardWindow: Int?

    func validate() throws {
        if source == .file && data == nil && !join { throw ValidationError("--source file needs --data FILE") }
        if join && source != .redis { throw ValidationError("--join works with --source redis") }
        if featureShards < 1 { throw ValidationError("--feature-shards must be at least 1") }
        if !(peerTimeout >= 0) { throw ValidationError("--peer-timeout must be ≥ 0 seconds (0 = wait forever)") }
        if peerTimeout > 0 && peerTimeout < 5 { throw ValidationError("--peer-timeout below 5 s would end healthy jobs during a slow step; use ≥ 5 (or 0 = off)") }
    }

    var runsUnderMPI: Bool { mpi || source == .redis || ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil }

    func run() throws {
        _ = try logging.start("train", stream: .standardOutput)
        let settings = try model.settings()
        var cfg = try model.load(settings)
        if let epochs { cfg.train.epochs = epochs }
        if let checkpointEvery { cfg.train.checkpointEvery = checkpointEvery }
        if let keep { cfg.train.keepCheckpoints = keep }
        if let logEvery { cfg.train.logEvery = logEvery }
        if let minFrequency { cfg.train.minFrequency = minFrequency }
        try cfg.train.validate()
        BLAS.setThreads(cfg.train.blasThreads)
        let stop = ShutdownSignals.install()
        stop.onSignal { sig in logger.info("received \(ShutdownSignals.name(of: sig)): finishing the step, then checkpointing and stopping") }
        // Rank 0 (mpirun's world rank, known before MPI starts; never a joiner) serves the metrics.
        if !join, (ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "0") == "0" {
            try metrics.start(port: metrics.metricsPort, logger: logger)
        }
        if source == .file, let data { try checkFileFormat(data, kind: cfg.kind) }
        if source == .redis {
            try runOnline(cfg, redis: try store.resolve(settings), stop: stop)
        } else if cfg.kind != WideDeepCheckpoint.modelKind {
            if runsUnderMPI { try runAsMPIJob { try trainBehaviorFile(cfg, world: try MPI.world(), stop: stop) } }
            else { try trainBehaviorFile(cfg, world: nil, stop: stop) }
        } else if runsUnderMPI {
            try runMPI(cfg, stop: stop)
        } else {
            try runSingle(cfg, stop: stop)
        }
    }

    /// The statistics this run encodes with: --stats, or a pass over the training file.
    func loadStats(_ cfg: ConfigFile) throws -> FeatureStats {
        if let stats { return try FeatureStats.read(from: URL(fileURLWithPath: stats)) }
        logger.info("no --stats given: running the statistics pass on \(data!) (min frequency \(cfg.train.minFrequency))")
        let (s, r) = try FeatureStats.compute(file: data!, minFrequency: cfg.train.minFrequency)
        reportRejections(r, to: logger)
        return s
    }

    func makeSource(_ cfg: ConfigFile, stats: FeatureStats) throws -> BatchSource {
        try FileBatchSource(path: data!, encoder: FeatureEncoder(stats: stats),
                            batchSize: cfg.train.batchSize, epochs: cfg.train.epochs) { r in
            logger.warning("rejected \(r)")
        }
    }

    func runSingle(_ cfg: ConfigFile, stop: ShutdownSignals) throws {
        try checkNewLineage(cfg)
        let featureStats = try loadStats(cfg)
        let store = CheckpointStore(directory: URL(fileURLWithPath: checkpointDir), keep: cfg.train.keepCheckpoints)
        let wd = WideDeepModel(config: cfg.model)
        logger.info("training Wide&Deep: embedding \(cfg.model.embeddingSize), deep \(cfg.model.deepLayers), batch \(cfg.train.batchSize), \(cfg.train.epochs) epoch(s), \(featureStats.categoryCount) categories")
        let trainer = Trainer(model: wd, stats: featureStats, settings: cfg.train, source: try makeSource(cfg, stats: featureStats),
                              store: store, logger: logger)
        trainer.untilIdle = untilIdle
        trainer.stopRequested = { stop.isRaised }
        let s = try trainer.run()
        logger.info("\(summaryLine(s))")
    }

    func runMPI(_ cfg: ConfigFile, stop: ShutdownSignals) throws {
        try runAsMPIJob { try trainFromFile(cfg, stop: stop) }
    }

    /// Runs the body of an MPI job. A clean return finalizes MPI. An error is printed first
    /// (with the rank) and then ends the whole job with `MPI_Abort`: finalizing instead would
    /// leave the other ranks waiting forever in their next collective.
    func runAsMPIJob(_ body: () throws -> Void) throws {
        _ = try MPI.initialize(required: .funneled)
        do {
            try body()
        } catch {
            let world = try? MPI.world()
            let rank = world.map { "rank \($0.rank)/\($0.size)" } ?? "rank ?"
            logger.critical("Error (\(rank)): \(error)")
            MPI.abortJob(code: 1)
        }
        try MPI.finalize()
    }

    func trainFromFile(_ cfg: ConfigFile, stop: ShutdownSignals) throws {
        let world = try MPI.world()
        if world.rank == 0 { try checkNewLineage(cfg) }
        let rank = world.rank, size = world.size
        // Rank 0 decides the statistics and the initial model; everyone else receives them, so
        // ranks on other hosts need no shared filesystem.
        var statsBytes: [UInt8] = []
        if rank == 0 { statsBytes = try loadStats(cfg).serialized() }
        statsBytes = try world.broadcast(bytes: statsBytes, root: 0)
        let featureStats = try FeatureStats(serialized: statsBytes, source: "stats from rank 0")
        let wd = try broadcastModel(rank == 0 ? WideDeepModel(config: cfg.model) : nil, config: cfg.model, root: 0, over: world)
        let store = CheckpointStore(directory: URL(fileURLWithPath: checkpointDir), keep: cfg.train.keepCheckpoints)
        let collectives = MPICollectives(communicator: world)
        let src = StridedBatchSource(try makeSource(cfg, stats: featureStats), rank: rank, size: size)
        if rank == 0 {
            logger.info("training Wide&Deep on \(size) MPI ranks: embedding \(cfg.model.embeddingSize), deep \(cfg.model.deepLayers), batch \(cfg.train.batchSize) per rank, \(featureStats.categoryCount) categories")
        }
        let trainer = Trainer(model: wd, stats: featureStats, settings: cfg.train, source: src, collectives: collectives,
                              store: rank == 0 ? store : nil, logger: logger)
        trainer.untilIdle = untilIdle
        trainer.stopRequested = { stop.isRaised }
        let s = try trainer.run()
        logger.info(.init(stringLiteral: String(format: "rank %d/%d: %d steps, parameters fnv1a64=%016llx, communication %.1f%% of step time",
                   rank, size, s.steps, wd.parameterDigest(), 100 * s.communicationSeconds / max(s.communicationSeconds + s.computeSeconds, 1e-9))))
        if rank == 0 { logger.info("\(summaryLine(s))") }
    }
}

extension Train {
    /// Refuses a training file whose first line is plainly the other family's format (a
    /// behaviour CSV for Wide&Deep, a Criteo TSV for an RL family) before anything trains on it:
    /// otherwise every line would be rejected and an empty model written.
    func checkFileFormat(_ path: String, kind: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { return }   // the source reports a missing file
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 8192)) ?? Data()
        guard let line = head.split(separator: 0x0A).first(where: { !$0.isEmpty }) else { return }
        let bytes = [UInt8](line)
        let looksBehaviour = bytes.withUnsafeBytes { (try? BehaviorParser().parse($0)) != nil }
        let looksCriteo = bytes.filter { $0 == 0x09 }.count >= 38
        if kind == WideDeepCheckpoint.modelKind && looksBehaviour && !looksCriteo {
            throw CLIError("\(path) holds behaviour events (user,item,behavior,time), but the config's model is Wide&Deep "
                           + "(model.kind widedeep): train an RL model on it, e.g. --config configs/reinforce.yaml")
        }
        if kind != WideDeepCheckpoint.modelKind && looksCriteo && !looksBehaviour {
            throw CLIError("\(path) holds Criteo rows (tab-separated), but model.kind \(kind) trains on behaviour events "
                           + "(user,item,behavior,time): use --config configs/widedeep.yaml for Criteo data")
        }
    }

    /// An RL family on a behaviour file (`user_behavior.csv`: user,item,behavior,time), one pass,
    /// through the feature workers' transition rule. Every rank builds the same fresh model from
    /// the seed and assigns the same ids while reading the whole file; rank r of N trains on
    /// every N-th batch.
    func trainBehaviorFile(_ cfg: ConfigFile, world: Communicator?, stop: ShutdownSignals) throws {
        let rank = world?.rank ?? 0, size = world?.size ?? 1
        if rank == 0 { try checkNewLineage(cfg) }
        guard let c = cfg.transitionModel else { throw CLIError("model.kind \(cfg.kind) does not train on a behaviour file") }
        let model = try ModelFamilies.fresh(kind: cfg.kind, config: cfg.modelConfigJSON, sidecars: [:], batchSize: cfg.train.batchSize)
        let rule = try fileRule(historyLength: c.historyLength)
        let file = try BehaviorFileSource(path: data!, rule: rule, batchSize: cfg.train.batchSize, epochs: cfg.train.epochs) { r in
            logger.warning("rejected \(r)")
        }
        let source: BatchSource = size > 1 ? StridedBatchSource(file, rank: rank, size: size) : file
        if let rl = model as? any BehaviorTrainable { rl.refreshKeys = { file.keys } }
        let store = CheckpointStore(directory: URL(fileURLWithPath: checkpointDir), keep: cfg.train.keepCheckpoints)
        let collectives: Collectives = world.map { MPICollectives(communicator: $0) } ?? LocalCollectives()
        if rank == 0 {
            logger.info("training \(cfg.kind) on \(size) process(es): history \(c.historyLength), reward window \(rule.rewardWindow), embedding \(c.embeddingSize), hidden \(c.hiddenSize), batch \(cfg.train.batchSize) per process, \(cfg.train.epochs == 1 ? "one pass" : "\(cfg.train.epochs) passes") over \(data!)")
        }
        let trainer = Trainer(model: model, settings: cfg.train, source: source, collectives: collectives,
                              store: rank == 0 ? store : nil, logger: logger)
        trainer.untilIdle = untilIdle
        trainer.stopRequested = { stop.isRaised }
        let s = try trainer.run()
        if size > 1 {
            logger.info("\(String(format: "rank %d/%d: %d steps, parameters fnv1a64=%016llx", rank, size, s.steps, model.parameterDigest))")
        }
        if rank == 0 { logger.info("\(summaryLine(s))") }
    }

    /// The feature workers' transition rule for a behaviour file: their defaults (BehaviorSettings)
    /// with the model's history length and the reward window of --reward-window or the config's
    /// `behavior:` section, so the file trains on the transitions the streams would carry.
    func fileRule(historyLength: Int) throws -> TransitionRule {
        let section = try model.settings().section("behavior")
        try section.checkKeys(["reward_window"])
        var s = BehaviorSettings()
        s.historyLength = historyLength
        s.rewardWindow = try rewardWindow ?? section.positiveInt("reward_window") ?? s.rewardWindow
        do { try s.validate() } catch { throw CLIError("\(error)") }
        return s.rule
    }

    /// The resident online trainer: Redis feature streams, resume, dynamic join, leave.
    func runOnline(_ cfg: ConfigFile, redis: RedisSettings, stop: ShutdownSignals) throws {
        try runAsMPIJob { try trainOnline(cfg, redis: redis, stop: stop) }
    }

    func trainOnline(_ cfg: ConfigFile, redis: RedisSettings, stop: ShutdownSignals) throws {
        var options = OnlineTrainerOptions(redisAddress: redis.address.value, checkpointDir: URL(fileURLWithPath: checkpointDir))
        options.prefix = redis.prefix.value
        options.shardCount = featureShards
        options.untilIdle = untilIdle
        options.peerTimeout = peerTimeout > 0 ? .seconds(peerTimeout) : nil
        options.resume = !fresh
        options.freshnessLog = freshnessLog.map { URL(fileURLWithPath: $0) }
        let trainer: OnlineTrainer
        if join {
            trainer = try OnlineTrainer.join(settings: cfg.train, options: options, logger: logger)
        } else {
            let world = try MPI.world()
            if world.rank == 0 && cfg.kind == WideDeepCheckpoint.modelKind { try checkOnlineInputs(cfg) }
            if world.rank == 0 && cfg.kind != WideDeepCheckpoint.modelKind && fresh { try checkNewLineage(cfg) }
            let featureStats: FeatureStats? = try world.rank == 0 ? stats.map { try FeatureStats.read(from: URL(fileURLWithPath: $0)) } : nil
            let sidecars = featureStats.map { [WideDeepCheckpoint.statsFileName: Data($0.serialized())] } ?? [:]
            trainer = try OnlineTrainer.start(world: world, kind: cfg.kind, config: cfg.modelConfigJSON,
                                              sidecars: sidecars, settings: cfg.train, options: options, logger: logger)
        }
        trainer.signalled = { stop.isRaised }
        let s = try trainer.run()
        logger.info(.init(stringLiteral: String(format: "rank %d/%d: %d steps, parameters fnv1a64=%016llx, communication %.1f%% of step time (%@)",
                   trainer.rank, trainer.size, s.steps, trainer.model.parameterDigest,
                   100 * s.communicationSeconds / max(s.communicationSeconds + s.computeSeconds, 1e-9), s.stopReason)))
        if trainer.trainer.collectives.isCoordinator { logger.info("\(summaryLine(s))") }
    }
}

extension Train {
    /// Rank 0's inputs for an online run, checked before any collective: a fresh start needs
    /// the feature statistics, a resume needs nothing else.
    func checkOnlineInputs(_ cfg: ConfigFile) throws {
        let dir = URL(fileURLWithPath: checkpointDir)
        let resumable = try !fresh && OnlineTrainer.resumableCheckpoint(in: CheckpointStore(directory: dir, keep: cfg.train.keepCheckpoints)) != nil
        if stats == nil && !resumable {
            throw CLIError("""
                train --source redis needs --stats FILE for a fresh start: there is \(fresh ? "--fresh" : "no checkpoint in \(checkpointDir) to resume from"). \
                Pass the statistics file the featurize workers use (`streamrec stats --data … --out features.stats`), \
                or --checkpoint-dir DIR holding a checkpoint to resume from.
                """)
        }
        if fresh { try checkNewLineage(cfg) }
        if let stats, !FileManager.default.isReadableFile(atPath: stats) {
            throw CLIError("--stats \(stats): no such readable file; pass the statistics file from `streamrec stats` (the one the featurize workers use)")
        }
    }
}

extension Train {
    /// A new lineage (file training, or `--fresh`) would reuse the step numbers of the versions
    /// already in --checkpoint-dir, and a version is never rewritten: refuse before training.
    func checkNewLineage(_ cfg: ConfigFile) throws {
        let existing = CheckpointStore(directory: URL(fileURLWithPath: checkpointDir), keep: cfg.train.keepCheckpoints).list()
        guard let newest = existing.last else { return }
        throw CLIError("""
            --checkpoint-dir \(checkpointDir) already holds \(existing.count) checkpoint version(s) of another run \
            (newest \(newest.url.lastPathComponent)); versions are never rewritten. Pass an empty --checkpoint-dir, \
            or remove the old versions\(source == .redis ? ", or drop --fresh to resume from them" : "").
            """)
    }
}

func summaryLine(_ s: TrainSummary) -> String {
    if let ndcg = s.metrics["pv_ndcg@10"] {
        return String(format: "done (%@): %d steps, %d transitions in %.1fs (%.0f transitions/s), progressive NDCG@10 %.4f, %d lines rejected; checkpoint stall %.3fs; checkpoint %@",
                      s.stopReason, s.steps, s.samples, s.seconds, Double(s.samples) / max(s.seconds, 1e-9), ndcg, s.rejected,
                      s.checkpointStallSeconds, s.lastCheckpoint?.path ?? "none")
    }
    return String(format: "done (%@): %d steps, %d samples in %.1fs (%.0f samples/s), progressive AUC %@, log loss %.4f, %d rows rejected; checkpoint stall %.3fs; checkpoint %@",
           s.stopReason, s.steps, s.samples, s.seconds, Double(s.samples) / max(s.seconds, 1e-9),
           s.progressiveAUC.map { String(format: "%.4f", $0) } ?? "n/a", s.progressiveLogLoss, s.rejected,
           s.checkpointStallSeconds, s.lastCheckpoint?.path ?? "none")
}
