import Testing
import Foundation
import TestSupport
import Features
import FeatureStore
import Streaming

/// The trainer under the failures issue 9 found: batches larger than the configured workspace,
/// fatal errors on any rank (which used to hang the job silently), Redis restarting under a
/// running job, and stopping while Redis is away.
@Suite(.serialized) struct TrainerRobustnessTests {
    let t = OnlineTrainingTests()

    func mpirun() throws -> String { try #require(findExecutable("mpirun")) }

    func onlineArgs(redisPort: Int, stats: String?, ck: String, preset: String? = "small", untilIdle: Double? = 1.5,
                    config: String? = nil, extra: [String] = []) throws -> [String] {
        let bin = try #require(streamrecBinary())
        var args = ["--oversubscribe", bin, "train", "--source", "redis", "--redis", "127.0.0.1:\(redisPort)",
                    "--config", config ?? t.configPath, "--feature-shards", "4", "--checkpoint-dir", ck,
                    "--checkpoint-every", "1000", "--log-every", "5"]
        if let preset { args += ["--preset", preset] }
        if let stats { args += ["--stats", stats] }
        if let untilIdle { args += ["--until-idle", "\(untilIdle)"] }
        return args + extra
    }

    /// A resident 2-rank job (no --until-idle) in the background, logging to dir/train.log;
    /// `through` runs it via a launcher script (e.g. cluster/train.sh) instead of mpirun.
    func residentJob(redisPort: Int, stats: String, ck: String, dir: URL, through script: String? = nil) throws -> BackgroundProcess {
        let args = ["-np", "2"] + (try onlineArgs(redisPort: redisPort, stats: stats, ck: ck, untilIdle: nil))
        let (exe, argv) = try script.map { ("/bin/bash", [$0] + args) } ?? (mpirun(), args)
        return try BackgroundProcess(exe, argv, environment: mpiTestEnvironment, log: dir.appendingPathComponent("train.log"))
    }

    // MARK: Any batch size with any config

    /// Batches of 1, 999, 1,000, 1,001 and 4,096 rows (the config's workspace is sized for
    /// 1,000) train with each preset on 1 and 2 ranks; the replicas stay identical.
    @Test(arguments: [("small", 1), ("small", 2), (nil, 1), (nil, 2)] as [(String?, Int)])
    func batchesOfAnySizeTrain(preset: String?, ranks: Int) throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let sizes = [1, 999, 1_000, 1_001, 4_096]
        let stats = try t.fillStore(redisPort: redis.port, dir: dir, batchSizes: sizes, shards: 4)
        let ck = dir.appendingPathComponent("ck").path
        let r = try runProcess(try mpirun(), ["-np", "\(ranks)"] + onlineArgs(redisPort: redis.port, stats: stats, ck: ck, preset: preset),
                               environment: mpiTestEnvironment, timeout: .seconds(300))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(try t.manifest(ck)["samples_trained"] as? Int == sizes.reduce(0, +), "\(r.stdout)")
        let digests = r.stdout.split(separator: "\n").compactMap { l in l.range(of: "fnv1a64=").map { String(l[$0.upperBound...].prefix(16)) } }
        #expect(digests.count == ranks && Set(digests).count == 1, "\(r.stdout)")
    }

    // MARK: A fatal error on any rank ends the job with the error printed

    enum Failure: String, CaseIterable, CustomTestStringConvertible {
        case noStats, unreadableStats, badConfig, redisUnreachable, corruptCheckpoint, corruptBatchOnRank1, freshIntoOldLineage
        var testDescription: String { rawValue }
    }

    @Test(arguments: Failure.allCases)
    func aFatalErrorEndsTheJobWithItsMessage(_ failure: Failure) throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stats = try t.fillStore(redisPort: redis.port, dir: dir, rows: 800, batch: 100, shards: 4)
        let ck = dir.appendingPathComponent("ck").path
        var port = redis.port
        var statsArg: String? = stats
        var config: String?
        var extra: [String] = []
        let expected: String
        switch failure {
        case .noStats:
            statsArg = nil
            expected = "needs --stats FILE"
        case .unreadableStats:
            statsArg = dir.appendingPathComponent("missing.stats").path
            expected = "no such readable file"
        case .badConfig:
            config = dir.appendingPathComponent("bad.yaml").path
            try "model: [1, 2\n".write(toFile: config!, atomically: true, encoding: .utf8)
            expected = "bad.yaml"
        case .redisUnreachable:
            port = try freeLoopbackPort()
            expected = "cannot connect to Redis"
        case .corruptCheckpoint:
            let v = URL(fileURLWithPath: ck).appendingPathComponent("step-000000000007")
            try FileManager.default.createDirectory(at: v, withIntermediateDirectories: true)
            try "{not json".write(to: v.appendingPathComponent("manifest.json"), atomically: true, encoding: .utf8)
            try "step-000000000007".write(toFile: ck + "/LATEST", atomically: true, encoding: .utf8)
            expected = "step-000000000007"
        case .corruptBatchOnRank1:
            // Shard 1 belongs to rank 1 of 2: a checksummed-looking entry that is not a batch.
            let conn = try RedisConnection(host: "127.0.0.1", port: redis.port)
            try conn.command(bytes: [Array("XADD".utf8), Array("sr:fs:1".utf8), Array("*".utf8), Array("b".utf8),
                                     Array("SRFB".utf8) + [1, 0] + [UInt8](repeating: 7, count: 60)])
            expected = "Error (rank 1/2): feature stream shard 1 entry"
        case .freshIntoOldLineage:
            let first = try runProcess(try mpirun(), ["-np", "1"] + onlineArgs(redisPort: redis.port, stats: stats, ck: ck),
                                       environment: mpiTestEnvironment, timeout: .seconds(120))
            try #require(first.status == 0, "\(first.stdout)\n\(first.stderr)")
            extra = ["--fresh"]
            expected = "versions are never rewritten"
        }
        let started = Date()
        let r = try runProcess(try mpirun(), ["-np", "2"] + onlineArgs(redisPort: port, stats: statsArg, ck: ck, config: config, extra: extra),
                               environment: mpiTestEnvironment, timeout: .seconds(90))
        let elapsed = Date().timeIntervalSince(started)
        let output = r.stdout + r.stderr
        #expect(!r.timedOut, "the job hung: \(output)")
        #expect(r.status != 0, "\(output)")
        #expect(output.contains(expected), "expected '\(expected)' in: \(output)")
        #expect(elapsed < 30, "took \(elapsed)s")
    }

    // MARK: Redis restarts under a running job

    /// Redis goes away for 10 s while the job trains and comes back with its data (AOF): the
    /// trainer waits, continues, and trains every batch exactly once.
    @Test func trainerRidesOutARedisRestart() throws {
        let redis = try PersistentRedisServer()
        defer { redis.destroy() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stats = try t.fillStore(redisPort: redis.port, dir: dir, rows: 2_000, batch: 50, shards: 4)
        let ck = dir.appendingPathComponent("ck").path
        let job = try residentJob(redisPort: redis.port, stats: stats, ck: ck, dir: dir)
        defer { job.kill() }
        #expect(poll(for: 120) { job.output.contains("step: 10,") }, "\(job.output)")
        redis.stop()
        #expect(poll(for: 30) { job.output.contains("unavailable") }, "\(job.output)")
        Thread.sleep(forTimeInterval: 10)   // the outage itself, not a synchronisation
        #expect(job.isRunning, "the trainer died while Redis was down: \(job.output)")
        try redis.start()
        #expect(poll(for: 30) { job.output.contains("is back after") }, "\(job.output)")
        // More data after the restart, then wait for all of it to be trained.
        _ = try t.fillStore(redisPort: redis.port, dir: dir, batchSizes: Array(repeating: 50, count: 20), shards: 4, seed: 22)
        #expect(try poll(for: 120) { let c = try t.counters(redisPort: redis.port, shards: 4); return c.trained == c.appended && c.trained.reduce(0, +) == 60 },
                "\(job.output)")
        let rank0 = try #require(job.mpiRank(0))
        kill(rank0, SIGTERM)
        #expect(job.waitForExit(within: 60), "\(job.output)")
        #expect(job.exitStatus == 0, "\(job.output)")
        #expect(try t.manifest(ck)["samples_trained"] as? Int == 3_000, "\(job.output)")
    }

    // MARK: Stopping while Redis is away

    /// With Redis down, SIGTERM to rank 1 makes it leave at the next step boundary and SIGTERM
    /// to rank 0 stops the job with a final checkpoint, both within seconds; the job exits 0.
    @Test func sigtermStopsTheJobWhileRedisIsDown() throws {
        let redis = try PersistentRedisServer()
        defer { redis.destroy() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stats = try t.fillStore(redisPort: redis.port, dir: dir, rows: 1_000, batch: 50, shards: 4)
        let ck = dir.appendingPathComponent("ck").path
        let job = try residentJob(redisPort: redis.port, stats: stats, ck: ck, dir: dir)
        defer { job.kill() }
        #expect(try poll(for: 120) { try t.counters(redisPort: redis.port, shards: 4).trained.reduce(0, +) == 20 }, "\(job.output)")
        redis.stop()
        #expect(poll(for: 30) { job.output.contains("unavailable") }, "\(job.output)")
        let rank0 = try #require(job.mpiRank(0)), rank1 = try #require(job.mpiRank(1))
        kill(rank1, SIGTERM)
        #expect(poll(for: 15) { job.output.contains("rank(s) left at step") }, "\(job.output)")
        kill(rank0, SIGTERM)
        #expect(job.waitForExit(within: 20), "rank 0 did not stop within 20 s of SIGTERM: \(job.output)")
        #expect(job.exitStatus == 0, "\(job.output)")
        #expect(try t.manifest(ck)["samples_trained"] as? Int == 1_000, "\(job.output)")
    }

    // MARK: A clean stop exits 0

    /// `mpirun` reports exit 1 after forwarding a SIGTERM however cleanly the ranks stop, so
    /// `cluster/train.sh` (mpirun's arguments, unchanged) turns a SIGTERM into rank 0's stop:
    /// every rank stops with a final checkpoint and the job exits 0.
    @Test func sigtermToTheLauncherExitsZero() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stats = try t.fillStore(redisPort: redis.port, dir: dir, rows: 1_000, batch: 100, shards: 4)
        let ck = dir.appendingPathComponent("ck").path
        let script = URL(fileURLWithPath: t.configPath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("cluster/train.sh").path
        let job = try residentJob(redisPort: redis.port, stats: stats, ck: ck, dir: dir, through: script)
        defer { job.kill() }
        #expect(try poll(for: 120) { try t.counters(redisPort: redis.port, shards: 4).trained.reduce(0, +) == 10 }, "\(job.output)")
        kill(job.pid, SIGTERM)
        #expect(job.waitForExit(within: 30), "\(job.output)")
        #expect(job.exitStatus == 0, "\(job.output)")
        #expect(job.output.contains("done (stop requested)"), "\(job.output)")
        #expect(try t.manifest(ck)["samples_trained"] as? Int == 1_000, "\(job.output)")
    }
}
