import Testing
import Foundation
import TestSupport
import Streaming

/// `train --source redis` under mpirun as an ACL user whose password comes from the environment:
/// every rank resolves `redis://trainer@…` itself, so a run only succeeds if each rank got the
/// password; a wrong one ends the job at once with at most one AUTH per rank.
@Suite(.serialized) struct OnlineTrainingLoginTests {
    @Test func ranksLogInWithThePasswordFromTheEnvironment() throws {
        let redis = try RedisServerFixture(arguments: ["--user", "trainer", "on", ">train-pw", "~*", "+@all"])
        defer { redis.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let t = OnlineTrainingTests()
        let stats = try t.fillStore(redisPort: redis.port, dir: dir, rows: 1_000, batch: 100, shards: 4)
        let mpirun = try #require(findExecutable("mpirun"))
        func args(_ ck: String) throws -> [String] {
            try t.trainArgs(redisPort: redis.port, stats: stats, ck: ck)
                .map { $0 == "127.0.0.1:\(redis.port)" ? "redis://trainer@127.0.0.1:\(redis.port)" : $0 }
        }
        let ok = try runProcess(mpirun, ["-np", "2"] + args(dir.appendingPathComponent("ck").path),
                                environment: mpiTestEnvironment.merging(["STREAMREC_REDIS_PASSWORD": "train-pw"]) { $1 },
                                timeout: .seconds(240))
        #expect(ok.status == 0, "\(ok.stdout)\n\(ok.stderr)")
        #expect(try t.manifest(dir.appendingPathComponent("ck").path)["samples_trained"] as? Int == 1_000)
        #expect(!(ok.stdout + ok.stderr).contains("train-pw"))
        #expect(try redis.failedLogins() == 0)

        let started = ContinuousClock.now
        let bad = try runProcess(mpirun, ["-np", "2"] + args(dir.appendingPathComponent("ck2").path),
                                 environment: mpiTestEnvironment.merging(["STREAMREC_REDIS_PASSWORD": "wrong-pw"]) { $1 },
                                 timeout: .seconds(120))
        #expect(bad.status != 0 && !bad.timedOut)
        #expect(ContinuousClock.now - started < .seconds(60))
        let out = bad.stdout + bad.stderr
        #expect(out.contains("redis://trainer:***@127.0.0.1:\(redis.port)") && out.contains("STREAMREC_REDIS_PASSWORD") && !out.contains("wrong-pw"), "\(out)")
        #expect((1...2).contains(try redis.failedLogins()), "more than one AUTH per rank")
    }
}
