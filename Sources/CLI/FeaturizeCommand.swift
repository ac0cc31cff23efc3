import Logging
import ArgumentParser
import Features
import FeatureStore
import Featurize
import Foundation
import Streaming

struct Featurize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Feature worker: Kafka partitions → parsed, normalised, id-encoded batches → Redis feature streams.",
        discussion: """
        Joins the workers of --topic and takes a fair share of its partitions by lease in Redis \
        (sr:lease:TOPIC:P, renewed every second): when a worker stops renewing (killed, paused, cut \
        off), the others take its partitions over after --lease-seconds; when one joins or leaves, \
        the partitions are rebalanced. Every commit carries the lease's fencing token, so a worker \
        that lost a lease never commits that partition again. With --shard K --shards N the worker \
        owns the fixed set p ≡ K (mod N) instead (still by lease: a second worker with the same \
        --shard stands by). Each partition resumes from its progress in Redis \
        (sr:progress:TOPIC:P), not from Kafka committed offsets. \
        Rows are parsed and validated (bad rows → the sr:deadletter stream with a reason), dense \
        fields min/max-normalised and categories mapped to ids with the shared dictionary \
        (snapshot from --stats, online growth in Redis), and packed into batches of --batch-size \
        rows appended to sr:fs:(P mod --feature-shards). Each batch is committed with the \
        partition's progress in one Lua script, so a worker killed at any instant and restarted \
        covers every row exactly once. Stops cleanly on SIGINT/SIGTERM (commits what it holds; \
        while Redis is unreachable it stops retrying and leaves the rest to be read again), within \
        seconds even while Redis or Kafka is down; a second signal exits at once. \
        A partition whose stored progress is beyond the broker's high watermark (topic recreated, \
        cluster replaced, offsets reset) stops the worker with exit status 3 naming it, unless \
        --on-offset-reset restart-from-earliest says to read it again from the broker's earliest offset. \
        See docs/ARCHITECTURE.md and Sources/FeatureStore/FeatureStoreLayout.swift for the layout.
        """)

    @OptionGroup var settings: SettingsOptions

    @Option(help: "Input kind: criteo (Criteo rows → feature batches for Wide&Deep) or behavior (behaviour events → transitions, user state and popular items for the RL models). Default criteo, or featurize.kind in --config.")
    var kind: FeaturizeKind?

    @OptionGroup(title: "Behaviour events (--kind behavior)")
    var behavior: BehaviorOptions

    @Option(help: "Fixed assignment: this worker's shard k (0 ≤ k < --shards) owns partitions p ≡ k (mod K). Without --shard/--shards the worker takes a fair share by lease (the default).")
    var shard: Int?

    @Option(help: "Fixed assignment: the number of shards K (with --shard).")
    var shards: Int?

    @Option(help: "Lease time in seconds: a worker that has not renewed its leases for this long loses its partitions to the others (renewed every second). Default 5.")
    var leaseSeconds: Double = 5

    @Option(help: "Kafka topic (one row or event per message). Default: the kind's name (criteo, behavior).")
    var topic: String?

    @OptionGroup(title: "Kafka") var kafka: KafkaOptions

    @OptionGroup(title: "Redis") var store: RedisOptions
    @OptionGroup(title: "Logging") var logging: LogOptions
    @OptionGroup(title: "Metrics") var metrics: MetricsOptions

    @Option(help: "Feature statistics file from `streamrec stats` (dense min/max, dictionary snapshot).")
    var stats: String?

    @Option(help: "Rows per feature batch. Default 1000 (the trainer config's train.batch_size).")
    var batchSize: Int?

    @Option(help: "Commit a partial batch this long after it started (freshness). Default 200.")
    var lingerMs: Int?

    @Option(help: "Milliseconds unknown-category counts are merged locally before they are sent to Redis (online dictionary growth). Default 1000.")
    var growthIntervalMs: Int?

    @Option(help: "Threads that parse and encode rows, each owning a share of the partitions (more than 1 pays off only with cores to spare beside Redis). Default 1.")
    var parseThreads: Int?

    @Option(help: "Below-threshold category counts kept in Redis per field before old ones are forgotten (memory bound; 0 = unbounded). Default 250000.")
    var maxPendingCategories: Int?

    @Option(help: "Pause while a target feature stream has this many batches not yet trained. Default 256.")
    var maxPending: Int?

    @Option(help: "Number of feature shards S (partition p → stream sr:fs:(p mod S)). Default 8.")
    var featureShards: Int?

    @Option(help: "Stop after this many seconds without new messages (tests, benchmarks).")
    var untilIdle: Double?

    @Option(help: "Worker id in sr:workers (default featurize-KofN@host:pid).")
    var workerId: String?

    @Flag(help: "Only consume and count messages (the raw-consume ceiling for `bench`); writes nothing.")
    var raw = false

    @Option(help: "Seconds between progress lines.")
    var progressSeconds: Double = 5

    @Option(help: ArgumentHelp("When a partition's stored progress is beyond the broker's high watermark (topic recreated, "
                               + "cluster replaced, offsets reset): 'stop' (exit 3 naming the partitions; the default) or "
                               + "'restart-from-earliest' (move their progress back to the broker's earliest offset, logged "
                               + "and counted in sr:offsetreset:applied). Never skips.",
                               valueName: "stop|restart-from-earliest"))
    var onOffsetReset: String = OffsetResetPolicy.stop.rawValue

    func validate() throws {
        if shard != nil || shards != nil {
            guard let shard, let shards else { throw ValidationError("--shard and --shards go together (fixed assignment); give both, or neither to share the partitions by lease") }
            guard shards > 0, shard >= 0, shard < shards else { throw ValidationError("need 0 ≤ --shard < --shards") }
        }
        guard leaseSeconds >= 2, leaseSeconds <= 600 else {
            throw ValidationError("--lease-seconds must be in 2…600 (leases are renewed every second), got \(leaseSeconds)")
        }
        guard OffsetResetPolicy(rawValue: onOffsetReset) != nil else {
            throw ValidationError("--on-offset-reset must be one of \(OffsetResetPolicy.allCases.map(\.rawValue).joined(separator: ", ")), got '\(onOffsetReset)'")
        }
        if let lingerMs, lingerMs < 0 { throw ValidationError("--linger-ms must be ≥ 0") }
        if let growthIntervalMs, growthIntervalMs < 0 { throw ValidationError("--growth-interval-ms must be ≥ 0") }
        if let maxPendingCategories, maxPendingCategories < 0 { throw ValidationError("--max-pending-categories must be ≥ 0 (0 = unbounded)") }
        if let parseThreads, parseThreads < 1 { throw ValidationError("--parse-threads must be at least 1") }
        if let untilIdle, !(untilIdle > 0) { throw ValidationError("--until-idle must be a positive number of seconds") }
        guard progressSeconds > 0 else { throw ValidationError("--progress-seconds must be positive") }
    }

    func run() throws {
        // SIGINT/SIGTERM: the worker commits what it holds and exits 0; a second signal, or a stop
        // that takes longer than 20 s, exits at once (what is not committed is read again).
        let logger = try logging.start("featurize")
        let signals = ShutdownSignals.install()
        signals.exitUnlessStopped(within: .seconds(20), what: "featurize")
        let settingsFile = try settings.load()
        let file = try FeaturizeSettings(settingsFile)
        let batchSize = self.batchSize ?? file.batchSize ?? 1000
        let featureShards = self.featureShards ?? file.featureShards ?? 8
        let maxPending = self.maxPending ?? file.maxPending ?? 256
        let statsPath = stats ?? file.stats
        guard batchSize > 0, batchSize <= 1_000_000 else { throw ValidationError("--batch-size must be in 1…1000000") }
        guard featureShards > 0 else { throw ValidationError("--feature-shards must be positive") }
        guard maxPending > 0 else { throw ValidationError("--max-pending must be positive") }
        let kind = try self.kind ?? file.kind.map {
            guard let k = FeaturizeKind(rawValue: $0) else { throw ValidationError("\(settingsFile.path ?? "config"): featurize.kind must be criteo or behavior, got \($0)") }
            return k
        } ?? .criteo
        if kind == .criteo && !raw && statsPath == nil { throw ValidationError("--stats FILE is required (create it with `streamrec stats`)") }
        let statsValue: FeatureStats
        if let statsPath, kind == .criteo {
            statsValue = try FeatureStats.read(from: URL(fileURLWithPath: statsPath))
        } else {
            statsValue = FeatureStats(minFrequency: 1, denseMin: Array(repeating: 0, count: 13),
                                      denseMax: Array(repeating: 1, count: 13), rows: 0, rejected: 0)
        }
        let redis = try store.resolve(settingsFile)
        let kafkaSettings = try kafka.resolve(settingsFile, role: .consumer)
        // Which broker and store a worker uses, and why: a default it fell back to is otherwise
        // only visible as an outage.
        let who = shard.map { "\($0)/\(shards ?? 1)" } ?? "\(ProcessInfo.processInfo.processIdentifier)"
        try metrics.start(port: metrics.metricsPort ?? file.metricsPort, logger: logger.tagged("featurize[\(who)]"))
        var config = kafkaSettings.config
        if config["client.id"] == nil { config["client.id"] = "streamrec-featurize-\(shard.map(String.init) ?? "\(ProcessInfo.processInfo.processIdentifier)")" }
        let topicName = topic ?? file.topic ?? kind.defaultTopic
        var options: FeaturizeOptions
        if let shard, let shards {
            options = FeaturizeOptions(shard: shard, shards: shards, topic: topicName, kafka: config, redisAddress: redis.address.value, workerId: workerId)
            options.assignment = .fixed
        } else {
            options = .leased(topic: topicName, kafka: config, redisAddress: redis.address.value, workerId: workerId)
        }
        options.leaseTime = .seconds(leaseSeconds)
        options.prefix = redis.prefix.value
        options.batchSize = batchSize
        options.linger = .milliseconds(lingerMs ?? file.lingerMs ?? 200)
        options.growthInterval = .milliseconds(growthIntervalMs ?? file.growthIntervalMs ?? 1000)
        options.maxPendingCategories = maxPendingCategories ?? file.maxPendingCategories ?? 250_000
        options.parseThreads = max(1, parseThreads ?? file.parseThreads ?? 1)
        options.maxPending = Int64(maxPending)
        options.featureShards = featureShards
        options.raw = raw
        options.untilIdle = untilIdle.map { .seconds($0) }
        options.statsSource = statsPath ?? ""
        options.progressEvery = .seconds(progressSeconds)
        options.onOffsetReset = OffsetResetPolicy(rawValue: onOffsetReset) ?? .stop
        var startLogger = logger.tagged("featurize[\(who)]")
        startLogger[metadataKey: "worker"] = .string(options.workerId)
        startLogger.info("Kafka \(kafkaSettings.bootstrap); Redis \(redis.address), prefix \(redis.prefix.value)")
        let summary: FeaturizeSummary
        do {
            switch kind {
            case .criteo:
                summary = try FeaturizeWorker(options: options, stats: statsValue, shouldStop: { signals.isRaised }, logger: logger).runCriteo()
            case .behavior:
                let settings = try behavior.settings(file: settingsFile.section("behavior"))
                let featurizer = BehaviorFeaturizer(settings: settings, prefix: options.prefix)
                summary = try FeaturizeEngine(options: options, featurizer: featurizer, shouldStop: { signals.isRaised }, logger: logger).runBehavior()
            }
        } catch let error as FeaturizeError {
            if case .offsetReset = error {
                logger.error("\(error)")
                throw ExitCode(3)
            }
            throw CLIError("\(error)")
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        KafkaLog.shared.finish()
        print("summary " + String(decoding: try enc.encode(summary), as: UTF8.self))
        // Everything is committed or left to be re-read. Exit without closing the consumer: with
        // explicit assignment there is no group to leave, and librdkafka's close can wait for a
        // broker that is gone.
        Glibc.exit(0)
    }
}

/// The `featurize:` section of a settings file (configs/featurize.yaml); the Kafka and Redis
/// settings are the shared `kafka:` and `redis:` sections (KafkaOptions, RedisOptions).
struct FeaturizeSettings {
    var topic: String?, stats: String?
    var batchSize: Int?, lingerMs: Int?, growthIntervalMs: Int?, maxPendingCategories: Int?, parseThreads: Int?, maxPending: Int?, featureShards: Int?

    var kind: String?
    var metricsPort: Int?

    init() {}

    init(_ file: SettingsFile) throws {
        let f = try file.section("featurize")
        try f.checkKeys(["kind", "topic", "stats", "batch_size", "linger_ms", "growth_interval_ms", "max_pending_categories",
                         "parse_threads", "max_pending", "feature_shards", "metrics_port"],
                        moved: ["bootstrap": "move it to kafka.bootstrap (one kafka: section for every command)",
                                "kafka_properties": "move them to kafka.consumer (or kafka.client for every client)"])
        topic = try f.string("topic")
        kind = try f.string("kind")
        stats = try f.string("stats")
        batchSize = try f.positiveInt("batch_size")
        lingerMs = try f.nonNegativeInt("linger_ms")
        growthIntervalMs = try f.nonNegativeInt("growth_interval_ms")
        maxPendingCategories = try f.nonNegativeInt("max_pending_categories")
        parseThreads = try f.positiveInt("parse_threads")
        maxPending = try f.positiveInt("max_pending")
        featureShards = try f.positiveInt("feature_shards")
        metricsPort = try f.nonNegativeInt("metrics_port")
    }
}

// MARK: - Benchmark

/// `streamrec bench featurize`: one featurize process end to end (Kafka → Redis) against its own
/// raw-consume ceiling, on loopback with an in-process mock broker and a real redis-server.
/// Driven by scripts/bench-featurize.sh; results belong in docs/BENCHMARKS.md.
struct FeaturizeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "featurize",
        abstract: "Benchmark one featurize process: end-to-end rows (or events)/s vs its raw consume rate (see scripts/bench-featurize.sh).")

    @Option(help: "criteo: synthetic Criteo rows; behavior: `gen behavior` events (users' state, transitions, popular items).")
    var kind: FeaturizeKind = .criteo

    @Option(help: "Synthetic Criteo rows (or behaviour events) to produce.")
    var rows: Int = 600_000

    @Option(help: "--kind behavior: users and items of the generated events.")
    var users: Int = 10_000
    @Option(help: "--kind behavior: items of the generated events.")
    var items: Int = 5_000

    @Option(help: "Topic partitions (the mock broker keeps ~5 MiB per partition).")
    var partitions: Int = 32

    @Option(help: "Rows per feature batch.")
    var batchSize: Int = 1024

    @Option(help: "Passed to the worker's --growth-interval-ms.")
    var growthIntervalMs: Int = 1000

    @Option(help: "Passed to the worker's --parse-threads.")
    var parseThreads: Int = 1

    @Option(help: "Rows used for the statistics snapshot (the rest exercise OOV counting and online growth).")
    var statsRows: Int = 200_000

    @OptionGroup(title: "Kafka (the featurize consumer)") var librdkafka: KafkaPropertyOptions
    @OptionGroup(title: "Logging") var logging: LogOptions

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let logger = try logging.start("bench")

        // Redis (AOF on, fsync every second: the cluster/redis.conf setting).
        let redisPort = try freePort()
        let redis = Process()
        redis.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        redis.arguments = ["--port", "\(redisPort)", "--bind", "127.0.0.1", "--dir", tmp.path, "--save", "",
                           "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no"]
        redis.standardOutput = FileHandle.nullDevice
        redis.standardError = FileHandle.nullDevice
        try redis.run()
        defer {
            if let c = try? RedisConnection(host: "127.0.0.1", port: redisPort, timeout: .seconds(1)) { _ = try? c.command(["SHUTDOWN", "NOSAVE"]) }
            redis.waitUntilExit()
        }
        var redisUp = false
        for _ in 0..<200 where !redisUp {
            redisUp = (try? RedisConnection(host: "127.0.0.1", port: redisPort, timeout: .seconds(1)).command(["PING"]).text) == "PONG"
            if !redisUp { Thread.sleep(forTimeInterval: 0.05) }
        }
        guard redisUp else { throw CLIError("redis-server did not start") }

        // Broker, rows, stats.
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("bench", partitions: partitions)
        var lines: [[UInt8]] = []
        var partitionOf: [Int32] = []
        lines.reserveCapacity(rows)
        let statsFile = tmp.appendingPathComponent("features.stats")
        var workerArgs: [String]
        switch kind {
        case .criteo:
            logger.info("generating \(rows) synthetic Criteo rows …")
            var gen = SyntheticCriteo(seed: 2024)
            for i in 0..<rows { lines.append(gen.nextRow().line); partitionOf.append(Int32(i % partitions)) }
            var builder = FeatureStatsBuilder()
            var row = CriteoRow()
            for l in lines.prefix(statsRows) { if (try? CriteoParser().parse(bytes: l, into: &row)) != nil { builder.add(row) } }
            try builder.build(minFrequency: 5).write(to: statsFile)
            workerArgs = ["--stats", statsFile.path, "--growth-interval-ms", "\(growthIntervalMs)"]
        case .behavior:
            // `gen behavior`'s planted data in global time order, keyed by user (one user, one partition).
            let perUser = max(2, rows / max(1, users))
            logger.info("generating \(users) users × ~\(perUser) behaviour events over \(items) items …")
            var cfg = SyntheticBehavior.Configuration(users: users, items: items, eventsPerUser: perUser)
            cfg.holdoutEvents = 1
            let data = SyntheticBehavior(seed: 2024, configuration: cfg).generate()
            for e in data.training.prefix(rows) {
                lines.append(Array("\(SyntheticBehavior.userID(Int(e.user))),\(SyntheticBehavior.itemID(Int(e.item))),\(e.behavior.name),\(e.time)".utf8))
                partitionOf.append(Int32(Int(e.user) % partitions))
            }
            workerArgs = ["--kind", "behavior"]
        }

        let produced = lines.count
        logger.info("producing to \(partitions) partitions …")
        let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: cluster.bootstrapServers,
                                                             ["linger.ms": "20", "batch.num.messages": "10000",
                                                              "queue.buffering.max.messages": "1000000"]))
        let t0 = ContinuousClock.now
        for (i, l) in lines.enumerated() {
            try producer.produce(topic: "bench", partition: partitionOf[i], key: nil, value: l)
        }
        try producer.flush(timeout: .seconds(120))
        let produceSeconds = (ContinuousClock.now - t0).seconds
        guard producer.deliveryStats.failed == 0 else { throw CLIError("produce failed: \(producer.deliveryStats.firstError.map { "\($0)" } ?? "")") }
        let bytes = lines.reduce(0) { $0 + $1.count }
        lines = []

        func runWorker(_ extra: [String]) throws -> [String: Any] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            // --config /dev/null: the bench's own broker and Redis, whatever configs/cluster.yaml says.
            p.arguments = ["featurize", "--config", "/dev/null", "--topic", "bench", "--bootstrap", cluster.bootstrapServers,
                           "--redis", "127.0.0.1:\(redisPort)", "--batch-size", "\(batchSize)",
                           "--max-pending", "1000000", "--until-idle", "1.5", "--progress-seconds", "5",
                           "--parse-threads", "\(parseThreads)"]
                + workerArgs + librdkafka.arguments + extra
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.standardError
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            guard p.terminationStatus == 0,
                  let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last(where: { $0.hasPrefix("summary ") }),
                  let obj = try JSONSerialization.jsonObject(with: Data(line.dropFirst(8).utf8)) as? [String: Any] else {
                throw CLIError("featurize \(extra) failed (exit \(p.terminationStatus))")
            }
            logger.info("\(String(line))")
            return obj
        }
        logger.info("raw consume (ceiling) …")
        let raw = try runWorker(["--raw", "--worker-id", "bench-raw"])
        // Redis's own CPU (INFO cpu) across the end-to-end run: it shares the machine with the worker.
        func redisCPU() -> Double {
            guard let text = (try? RedisConnection(host: "127.0.0.1", port: redisPort, timeout: .seconds(2)).command(["INFO", "cpu"]))?.text else { return 0 }
            return text.split(whereSeparator: \.isNewline).reduce(0.0) { sum, line in
                let kv = line.split(separator: ":")
                guard kv.count == 2, kv[0] == "used_cpu_sys" || kv[0] == "used_cpu_user" else { return sum }
                return sum + (Double(kv[1].trimmingCharacters(in: .whitespaces)) ?? 0)
            }
        }
        logger.info("featurize end to end …")
        // STREAMREC_BENCH_SLOWLOG=1: log every command's duration and summarise scripts by kind.
        let slowlog = ProcessInfo.processInfo.environment["STREAMREC_BENCH_SLOWLOG"] == "1"
        if slowlog, let c = try? RedisConnection(host: "127.0.0.1", port: redisPort, timeout: .seconds(2)) {
            _ = try? c.command(["CONFIG", "SET", "slowlog-max-len", "1000000"])
            _ = try? c.command(["CONFIG", "SET", "slowlog-log-slower-than", "0"])
        }
        let redisCPU0 = redisCPU()
        let full = try runWorker(["--worker-id", "bench-full"])
        let redisCPUSeconds = redisCPU() - redisCPU0
        if slowlog, let c = try? RedisConnection(host: "127.0.0.1", port: redisPort, timeout: .seconds(5)),
           let entries = try? c.command(["SLOWLOG", "GET", "-1"]).elements {
            var byKind: [String: (n: Int, us: Int64, args: Int)] = [:]
            for e in entries {
                guard let f = e.elements, f.count >= 4, let us = f[2].integer, let argv = f[3].elements else { continue }
                let name = argv.first?.text ?? "?"
                var kind = name
                if name.uppercased() == "EVALSHA" || name.uppercased() == "EVAL" {
                    // Slowlog keeps ≤ 32 args; the commit script has 7 keys, the grow script none.
                    kind = name + (argv.count > 2 && argv[2].text == "7" ? " (commit)" : " (grow/other)")
                }
                byKind[kind, default: (0, 0, 0)].n += 1
                byKind[kind, default: (0, 0, 0)].us += us
            }
            logger.info(.init(stringLiteral: "redis slowlog by kind (end-to-end run):\n" + byKind.sorted { $0.value.us > $1.value.us }.map {
                String(format: "  %@: %d calls, %.3f s, %.1f us/call", $0.key, $0.value.n, Double($0.value.us) / 1e6,
                       Double($0.value.us) / Double(max(1, $0.value.n)))
            }.joined(separator: "\n")))
        }
        if let text = (try? RedisConnection(host: "127.0.0.1", port: redisPort, timeout: .seconds(2)).command(["INFO", "commandstats"]))?.text {
            logger.info(.init(stringLiteral: "redis commandstats (whole bench):\n" + text.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("cmdstat_") }
                .map { "  " + $0.dropFirst(8) }.joined(separator: "\n")))
        }
        let rawRate = raw["activeRate"] as? Double ?? 0
        let fullRate = full["activeRate"] as? Double ?? 0
        let result: [String: Any] = [
            "kind": kind.rawValue, "rows": produced, "partitions": partitions, "batch_size": batchSize, "row_bytes_avg": Double(bytes) / Double(produced),
            "produce_rows_per_s": Double(produced) / produceSeconds,
            "raw_consume_rows_per_s": rawRate, "featurize_rows_per_s": fullRate, "ratio": rawRate > 0 ? fullRate / rawRate : 0,
            "featurize_rows": full["rows"] ?? 0, "featurize_batches": full["batches"] ?? 0,
            "featurize_lost_upstream": full["lostUpstream"] ?? 0, "online_ids": full["onlineIdsLearnt"] ?? 0,
            "featurize_cpu_seconds": full["cpuSeconds"] ?? 0, "redis_cpu_seconds": redisCPUSeconds, "raw_cpu_seconds": raw["cpuSeconds"] ?? 0,
            "featurize_rows_per_cpu_s": (full["cpuSeconds"] as? Double).map { $0 > 0 ? Double(produced) / $0 : 0 } ?? 0,
            "featurize_max_rss_mib": Double(full["maxRSSBytes"] as? Int64 ?? Int64(full["maxRSSBytes"] as? Int ?? 0)) / 1048576,
            "raw_max_rss_mib": Double(raw["maxRSSBytes"] as? Int64 ?? Int64(raw["maxRSSBytes"] as? Int ?? 0)) / 1048576,
            "growth_occurrences": full["growthOccurrences"] ?? 0, "growth_entries": full["growthEntries"] ?? 0,
            "growth_tail_seconds": full["growthTailSeconds"] ?? 0, "growth_interval_ms": growthIntervalMs,
        ]
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(String(format: """
            messages %d over %d partitions, %.0f bytes each, batch %d
            produce                 %.0f messages/s
            raw consume (ceiling)   %.0f messages/s   max RSS %.1f MiB
            featurize end to end    %.0f rows/s   max RSS %.1f MiB   (%@ rows or transitions, %@ batches, lost upstream %@)
            featurize CPU           %@ s user+sys (%@ messages per CPU-second; raw consume %@ s); redis-server %@ s
            online growth           %@ unknown-category occurrences sent as %@ entries (every %d ms); last growth %@ s after the last commit
            ratio                   %.2f
            """, produced, partitions, Double(bytes) / Double(produced), batchSize, Double(produced) / produceSeconds,
                         rawRate, result["raw_max_rss_mib"] as! Double, fullRate, result["featurize_max_rss_mib"] as! Double,
                         "\(full["rows"] ?? 0)", "\(full["batches"] ?? 0)", "\(full["lostUpstream"] ?? 0)",
                         String(format: "%.2f", full["cpuSeconds"] as? Double ?? 0),
                         String(format: "%.0f", result["featurize_rows_per_cpu_s"] as? Double ?? 0),
                         String(format: "%.2f", raw["cpuSeconds"] as? Double ?? 0), String(format: "%.2f", redisCPUSeconds),
                         "\(full["growthOccurrences"] ?? 0)", "\(full["growthEntries"] ?? 0)", growthIntervalMs,
                         String(format: "%.2f", full["growthTailSeconds"] as? Double ?? 0),
                         result["ratio"] as! Double))
        }
    }

    private func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}


