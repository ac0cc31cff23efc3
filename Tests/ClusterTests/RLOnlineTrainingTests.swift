import Testing
import Foundation
import TestSupport
import Streaming
import StreamRecNumerics

/// The RL path end to end with real parts: `gen behavior` → `produce` into the dev broker →
/// `featurize --kind behavior` into a real redis-server → `mpirun -np 2 streamrec train --source
/// redis --config configs/reinforce.yaml`: every transition trained exactly once (also across
/// kill -9 of a rank at seeded moments), replicas identical, checkpoints that `eval` reads.
@Suite(.serialized) struct RLOnlineTrainingTests {
    let configPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../configs/reinforce.yaml").standardized.path
    static let shards = 2

    /// Redis, a broker with topic behavior (4 partitions) and a directory, with `users` × 20
    /// generated behaviour events featurized into the store; all released together.
    final class FeaturizedBehaviour {
        let redis: RedisServerFixture
        let broker: BrokerFixture
        let dir: URL
        /// The `gen behavior` output directory.
        let data: URL

        init(_ suite: RLOnlineTrainingTests, users: Int, items: Int) throws {
            redis = try RedisServerFixture()
            broker = try BrokerFixture(topics: ["behavior": 4])
            dir = try temporaryTestDirectory()
            data = try suite.featurized(redis: redis, broker: broker, dir: dir, users: users, items: items)
        }

        deinit {
            redis.stop()
            _ = broker.stop()
            try? FileManager.default.removeItem(at: dir)
        }
    }

    /// Behaviour events featurized into the store; returns the data directory.
    func featurized(redis: RedisServerFixture, broker: BrokerFixture, dir: URL, users: Int, items: Int) throws -> URL {
        let bin = try #require(streamrecBinary())
        let data = dir.appendingPathComponent("data")
        let gen = try runProcess(bin, ["gen", "behavior", "--users", "\(users)", "--items", "\(items)", "--events-per-user", "20",
                                       "--seed", "5", "--out", data.path])
        #expect(gen.status == 0, "\(gen.stderr)")
        try produceAndFeaturize(data.appendingPathComponent("user_behavior.csv"), redis: redis, broker: broker)
        return data
    }

    /// `produce --format behavior` of `file`, then one `featurize --kind behavior` worker until idle.
    func produceAndFeaturize(_ file: URL, redis: RedisServerFixture, broker: BrokerFixture) throws {
        let bin = try #require(streamrecBinary())
        let produce = try runProcess(bin, ["produce", "--config", "/dev/null", "--format", "behavior", "--topic", "behavior",
                                           "--bootstrap", broker.bootstrapServers, "--data", file.path])
        #expect(produce.status == 0, "\(produce.stderr)")
        let featurize = try runProcess(bin, ["featurize", "--config", "/dev/null", "--kind", "behavior", "--topic", "behavior",
                                             "--shard", "0", "--shards", "1", "--bootstrap", broker.bootstrapServers,
                                             "--redis", "127.0.0.1:\(redis.port)", "--feature-shards", "\(Self.shards)",
                                             "--batch-size", "64", "--until-idle", "1.5",
                                             // Returns over 10 events: transitions wait for their successors (or the
                                             // watermark); whatever is still waiting at the end is simply not counted yet.
                                             "--reward-window", "10"], timeout: .seconds(180))
        #expect(featurize.status == 0, "\(featurize.stderr)")
    }

    /// Transitions appended (sr:rl:rows:{s}) and batches appended / trained per shard.
    func counters(redisPort: Int) throws -> (transitions: Int, appended: [Int], trained: [Int]) {
        let conn = try RedisConnection(host: "127.0.0.1", port: redisPort)
        func get(_ k: String) throws -> Int { Int(try conn.command(["GET", k]).text ?? "0") ?? 0 }
        let rows = try (0..<Self.shards).map { try get("sr:rl:rows:\($0)") }.reduce(0, +)
        return (rows, try (0..<Self.shards).map { try get("sr:rl:appended:\($0)") }, try (0..<Self.shards).map { try get("sr:rl:trained:\($0)") })
    }

    func trainArgs(redisPort: Int, ck: String, untilIdle: Double = 1.5) throws -> [String] {
        let bin = try #require(streamrecBinary())
        return ["--oversubscribe", bin, "train", "--source", "redis", "--redis", "127.0.0.1:\(redisPort)", "--config", configPath,
                "--feature-shards", "\(Self.shards)", "--checkpoint-every", "5", "--keep", "3", "--log-every", "5",
                "--checkpoint-dir", ck, "--until-idle", "\(untilIdle)"]
    }

    func manifest(_ ck: String) throws -> [String: Any] {
        let latest = try String(contentsOfFile: ck + "/LATEST", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(ck)/\(latest)/manifest.json"))) as? [String: Any])
    }

    @Test func trainsEveryTransitionOnceAndTheCheckpointEvaluates() throws {
        let fx = try FeaturizedBehaviour(self, users: 120, items: 150)
        let redis = fx.redis, dir = fx.dir
        let data = fx.data
        let (transitions, appended, _) = try counters(redisPort: redis.port)
        #expect(transitions > 1000, "featurize emitted \(transitions) transitions")
        let ck = dir.appendingPathComponent("ck").path
        let mpirun = try #require(findExecutable("mpirun"))
        let r = try runProcess(mpirun, ["-np", "2"] + trainArgs(redisPort: redis.port, ck: ck),
                               environment: mpiTestEnvironment, timeout: .seconds(240))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("policy_loss:") && r.stdout.contains("pv_ndcg@10:"), "\(r.stdout)")
        let digests = r.stdout.split(separator: "\n").compactMap { l in l.range(of: "fnv1a64=").map { String(l[$0.upperBound...].prefix(16)) } }
        #expect(digests.count == 2 && Set(digests).count == 1, "\(r.stdout)")
        let m = try manifest(ck)
        #expect(m["model_kind"] as? String == "reinforce")
        #expect(m["samples_trained"] as? Int == transitions)
        #expect(try counters(redisPort: redis.port).trained == appended)
        // The checkpoint carries the keys the feature workers assigned: eval maps held-out events.
        let bin = try #require(streamrecBinary())
        let e = try runProcess(bin, ["eval", "--checkpoint", ck, "--data", data.appendingPathComponent("heldout.csv").path,
                                     "--history", data.appendingPathComponent("user_behavior.csv").path])
        #expect(e.status == 0, "\(e.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [String: Any])
        #expect(json["events"] as? Int == 120)
        #expect(json["unknown_users"] as? Int == 0)
        #expect((json["unknown_items"] as? Int ?? 99) < 120 / 4, "\(e.stdout)")
        let ndcg = try #require(json["ndcg@10"] as? Double)
        #expect(ndcg >= 0 && ndcg <= 1)
    }

    /// kill -9 of a rank at seeded moments, restart, repeat: the final checkpoint has trained
    /// every transition exactly once.
    @Test func exactlyOnceAcrossKills() throws {
        let fx = try FeaturizedBehaviour(self, users: 300, items: 200)
        let redis = fx.redis, dir = fx.dir
        let (transitions, appended, _) = try counters(redisPort: redis.port)
        let batches = appended.reduce(0, +)
        let ck = dir.appendingPathComponent("ck").path
        let mpirun = try #require(findExecutable("mpirun"))
        let seed = UInt64(ProcessInfo.processInfo.environment["STREAMREC_FAULT_SEED"] ?? "") ?? UInt64.random(in: 1...999_999)
        print("RL exactlyOnceAcrossKills: fault seed \(seed) (replay with STREAMREC_FAULT_SEED=\(seed))")
        var rng = SplitMix64(seed: seed)
        let (kills, intermediate) = try killRanksAtSeededMoments(
            "RL exactlyOnceAcrossKills", attempts: 2, spacing: 0.3, total: batches, rng: &rng,
            start: { attempt in
                try BackgroundProcess(mpirun, ["-np", "2"] + (try trainArgs(redisPort: redis.port, ck: ck)),
                                      environment: mpiTestEnvironment, log: dir.appendingPathComponent("run-\(attempt).log"))
            },
            progress: { try counters(redisPort: redis.port).trained.reduce(0, +) },
            samplesTrained: { (try? manifest(ck))?["samples_trained"] as? Int ?? 0 })
        #expect(kills > 0)
        #expect(intermediate.contains { $0 < transitions }, "\(intermediate)")
        let r = try runProcess(mpirun, ["-np", "2"] + trainArgs(redisPort: redis.port, ck: ck),
                               environment: mpiTestEnvironment, timeout: .seconds(240))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(try manifest(ck)["samples_trained"] as? Int == transitions, "seed \(seed)")
        #expect(try counters(redisPort: redis.port).trained == appended, "seed \(seed)")
    }

    /// A worker joins a running REINFORCE job (rendezvous through ompi-server), trains, and
    /// leaves on SIGTERM: it left with exactly the parameters the job had at that step (its
    /// replica stayed identical), and every transition was trained once.
    @Test func aWorkerJoinsARunningJobAndLeavesWithIdenticalParameters() throws {
        let fx = try FeaturizedBehaviour(self, users: 200, items: 150)
        let redis = fx.redis, broker = fx.broker, dir = fx.dir
        let data = fx.data
        let ck = dir.appendingPathComponent("ck").path
        let mpirun = try #require(findExecutable("mpirun")), ompiServer = try #require(findExecutable("ompi-server"))
        let bin = try #require(streamrecBinary())
        let uri = dir.appendingPathComponent("ompi-server.uri").path
        let server = try BackgroundProcess(ompiServer, ["-r", uri, "--no-daemonize"], environment: mpiTestEnvironment,
                                           log: dir.appendingPathComponent("server.log"))
        defer { server.kill() }
        #expect(try poll(for: 10) { FileManager.default.fileExists(atPath: uri) })
        // The job waits for data (no --until-idle): it is stopped with SIGTERM at the end.
        let logA = dir.appendingPathComponent("a.log"), logB = dir.appendingPathComponent("b.log")
        let args = try trainArgs(redisPort: redis.port, ck: ck).filter { $0 != "--until-idle" && $0 != "1.5" }
        let a = try BackgroundProcess(mpirun, ["-np", "2", "--ompi-server", "file:\(uri)"] + args, environment: mpiTestEnvironment, log: logA)
        defer { a.kill() }
        let conn = try RedisConnection(host: "127.0.0.1", port: redis.port)
        #expect(try poll(for: 60) { try conn.command(["GET", "sr:train:port"]).text != nil })
        let b = try BackgroundProcess(mpirun, ["-np", "1", "--ompi-server", "file:\(uri)", bin, "train", "--source", "redis", "--join",
                                               "--redis", "127.0.0.1:\(redis.port)", "--config", configPath,
                                               "--feature-shards", "\(Self.shards)", "--checkpoint-dir", ck, "--log-every", "5"],
                                      environment: mpiTestEnvironment, log: logB)
        defer { b.kill() }
        func text(_ url: URL) -> String { (try? String(contentsOf: url, encoding: .utf8)) ?? "" }
        #expect(try poll(for: 60) { text(logB).contains("joined as rank 2 of 3") }, "\(text(logB))")
        // More behaviour events while three ranks train: produce the same users' events again.
        try produceAndFeaturize(data.appendingPathComponent("user_behavior.csv"), redis: redis, broker: broker)
        let (transitions, appended, _) = try counters(redisPort: redis.port)
        #expect(try poll(for: 120) { try counters(redisPort: redis.port).trained == appended })
        // The joiner leaves (SIGTERM to its rank), then the job stops (SIGTERM to rank 0).
        if let rank = b.mpiRank(0) { kill(rank, SIGTERM) }
        #expect(b.waitForExit(within: 60))
        #expect(try poll(for: 60) { text(logA).contains("rank(s) left at step") }, "\(text(logA))")
        if let rank0 = a.mpiRank(0) { kill(rank0, SIGTERM) }
        #expect(a.waitForExit(within: 60))
        let outA = text(logA), outB = text(logB)
        #expect(a.exitStatus == 0 && b.exitStatus == 0, "job \(a.exitStatus ?? -1): \(outA)\njoiner \(b.exitStatus ?? -1): \(outB)")
        #expect(outA.contains("rank 2 joined at step"), "\(outA)")
        func digest(_ line: Substring?) -> String? { line?.range(of: "fnv1a64=").map { String(line![$0.upperBound...].prefix(16)) } }
        let left = digest(outB.split(separator: "\n").first { $0.contains("leaves the job at step") })
        let remaining = digest(outA.split(separator: "\n").first { $0.contains("rank(s) left at step") })
        #expect(left != nil && left == remaining, "joiner \(left ?? "?") vs job \(remaining ?? "?")")
        let final = outA.split(separator: "\n").compactMap { l in l.contains("parameters fnv1a64=") && l.hasPrefix("rank ") ? digest(l) : nil }
        #expect(final.count == 2 && Set(final).count == 1, "\(outA)")
        #expect(try manifest(ck)["samples_trained"] as? Int == transitions)
    }
}
