import Testing
import Foundation
import TestSupport
import Features
import FeatureStore
import Streaming

/// `streamrec train --source redis` under mpirun against a real redis-server holding feature
/// streams: trains every batch exactly once, across kill -9 and restarts.
@Suite(.serialized) struct OnlineTrainingTests {
    let configPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../configs/widedeep.yaml").standardized.path

    /// Writes `rows` generated rows as feature batches of `batch` rows into `shards` streams
    /// (Kafka partition p → shard p), the way featurize commits them. Returns the stats file.
    func fillStore(redisPort: Int, dir: URL, rows: Int, batch: Int, shards: Int) throws -> String {
        let data = dir.appendingPathComponent("rows.tsv")
        try writeSynthetic(rows: rows, seed: 21, to: data, probabilitiesTo: dir.appendingPathComponent("rows.prob"))
        let (stats, _) = try FeatureStats.compute(file: data.path, minFrequency: 2)
        let statsPath = dir.appendingPathComponent("features.stats")
        try stats.write(to: statsPath)
        let lines = try String(contentsOf: data, encoding: .utf8).split(separator: "\n").map(String.init)
        let packed = BatchPacker.pack(lines: lines, encoder: FeatureEncoder(stats: stats), batchSize: batch)
        let store = FeatureStore(redis: try RedisConnection(host: "127.0.0.1", port: redisPort), prefix: "sr")
        var next = [Int64](repeating: 0, count: shards)
        for (i, b) in packed.batches.enumerated() {
            let p = i % shards
            let first = next[p], last = first + Int64(b.count) - 1
            let bytes = FeatureBatchCodec.encode(b, source: FeatureBatchSource(topic: "criteo", partition: Int32(p), firstOffset: first, lastOffset: last))
            _ = try store.commit(CommitUnit(topic: "criteo", partition: Int32(p), firstOffset: first, lastOffset: last,
                                            shard: p, encodedBatch: bytes, rows: b.count))
            next[p] = last + 1
        }
        return statsPath.path
    }

    func trainArgs(redisPort: Int, stats: String, ck: String, untilIdle: Double = 1.5) throws -> [String] {
        let bin = try #require(streamrecBinary())
        return ["--oversubscribe", bin, "train", "--source", "redis", "--redis", "127.0.0.1:\(redisPort)",
                "--config", configPath, "--preset", "small", "--stats", stats, "--feature-shards", "4",
                "--checkpoint-every", "3", "--keep", "3", "--log-every", "5", "--checkpoint-dir", ck,
                "--until-idle", "\(untilIdle)"]
    }

    func manifest(_ ck: String) throws -> [String: Any] {
        let latest = try String(contentsOfFile: ck + "/LATEST", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(ck)/\(latest)/manifest.json"))) as? [String: Any])
    }

    @Test func trainsEveryBatchOnceAndStaysIdentical() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stats = try fillStore(redisPort: redis.port, dir: dir, rows: 3_000, batch: 100, shards: 4)
        let ck = dir.appendingPathComponent("ck").path
        let mpirun = try #require(findExecutable("mpirun"))
        let r = try runProcess(mpirun, ["-np", "2"] + trainArgs(redisPort: redis.port, stats: stats, ck: ck),
                               environment: mpiTestEnvironment, timeout: .seconds(240))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let digests = r.stdout.split(separator: "\n").compactMap { l in l.range(of: "fnv1a64=").map { String(l[$0.upperBound...].prefix(16)) } }
        #expect(digests.count == 2 && Set(digests).count == 1, "\(r.stdout)")
        let m = try manifest(ck)
        #expect(m["samples_trained"] as? Int == 3_000)
        let positions = try #require(m["stream_positions"] as? [String: String])
        #expect(Set(positions.keys) == ["fs:0", "fs:1", "fs:2", "fs:3"])
        // Back-pressure bookkeeping: every batch counted as trained.
        let conn = try RedisConnection(host: "127.0.0.1", port: redis.port)
        var trained = 0
        for s in 0..<4 { trained += Int(try conn.command(["GET", "sr:trained:\(s)"]).text ?? "0") ?? 0 }
        #expect(trained == 30)
        // A rerun resumes from the checkpoint and finds nothing new: still exactly once.
        let again = try runProcess(mpirun, ["-np", "1"] + trainArgs(redisPort: redis.port, stats: stats, ck: ck, untilIdle: 1),
                                   environment: mpiTestEnvironment, timeout: .seconds(120))
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("resuming from"))
        #expect(try manifest(ck)["samples_trained"] as? Int == 3_000)
    }

    /// kill -9 of a rank at random moments (mpirun then ends the job), restart, repeat: the final
    /// checkpoint has trained every row exactly once.
    @Test func exactlyOnceAcrossKills() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let rows = 8_000
        let stats = try fillStore(redisPort: redis.port, dir: dir, rows: rows, batch: 50, shards: 4)
        let ck = dir.appendingPathComponent("ck").path
        let mpirun = try #require(findExecutable("mpirun"))
        var rng = SystemRandomNumberGenerator()
        var kills = 0
        var intermediate: [Int] = []
        for attempt in 0..<3 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: mpirun)
            p.arguments = ["-np", "2"] + (try trainArgs(redisPort: redis.port, stats: stats, ck: ck))
            var env = ProcessInfo.processInfo.environment
            for (k, v) in mpiTestEnvironment { env[k] = v }
            p.environment = env
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            // Let it get going (MPI start-up plus some steps), then kill one rank.
            Thread.sleep(forTimeInterval: Double.random(in: 2.5...5.0, using: &rng) + Double(attempt))
            let children = try runProcess("/usr/bin/pgrep", ["-P", "\(p.processIdentifier)"]).stdout
                .split(separator: "\n").compactMap { Int32($0) }
            if let victim = children.randomElement(using: &rng), p.isRunning {
                kill(victim, SIGKILL)
                kills += 1
            }
            let deadline = Date().addingTimeInterval(60)
            while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
            intermediate.append((try? manifest(ck))?["samples_trained"] as? Int ?? 0)
        }
        #expect(kills > 0)
        // The kills landed mid-stream: some restart began with rows still to train.
        #expect(intermediate.contains { $0 < rows }, "\(intermediate)")
        // Finish the stream.
        let r = try runProcess(mpirun, ["-np", "2"] + trainArgs(redisPort: redis.port, stats: stats, ck: ck),
                               environment: mpiTestEnvironment, timeout: .seconds(240))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(try manifest(ck)["samples_trained"] as? Int == rows)
    }
}
