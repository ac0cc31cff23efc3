import Testing
import Foundation
import TestSupport
import Streaming

/// DDPG and BCQ on the online path with real parts, as `RLOnlineTrainingTests` runs REINFORCE:
/// behaviour events → the dev broker → `featurize --kind behavior` → redis-server →
/// `mpirun -np 2 streamrec train --source redis --config configs/{ddpg,bcq}.yaml`: every transition
/// trained once, the two ranks' parameters identical (two gradient exchanges per step), a
/// checkpoint that `eval` reads with the feature workers' keys.
@Suite(.serialized) struct ActorCriticOnlineTrainingTests {
    @Test(arguments: ["ddpg", "bcq"])
    func trainsOnlineOnTwoRanksAndTheCheckpointEvaluates(_ kind: String) throws {
        let rl = RLOnlineTrainingTests()
        let configPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../configs/\(kind).yaml").standardized.path
        let fx = try RLOnlineTrainingTests.FeaturizedBehaviour(rl, users: 120, items: 150)
        let redis = fx.redis, dir = fx.dir, data = fx.data
        let (transitions, appended, _) = try rl.counters(redisPort: redis.port)
        #expect(transitions > 1000, "featurize emitted \(transitions) transitions")
        let ck = dir.appendingPathComponent("ck").path
        let args = try rl.trainArgs(redisPort: redis.port, ck: ck).map { $0 == rl.configPath ? configPath : $0 }
        #expect(args.contains(configPath))
        let mpirun = try #require(findExecutable("mpirun"))
        let r = try runProcess(mpirun, ["-np", "2"] + args, environment: mpiTestEnvironment, timeout: .seconds(240))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("critic_loss:") && r.stdout.contains("actor_loss:") && r.stdout.contains("pv_ndcg@10:"), "\(r.stdout)")
        let digests = r.stdout.split(separator: "\n").compactMap { l in l.range(of: "fnv1a64=").map { String(l[$0.upperBound...].prefix(16)) } }
        #expect(digests.count == 2 && Set(digests).count == 1, "\(r.stdout)")
        let m = try rl.manifest(ck)
        #expect(m["model_kind"] as? String == kind)
        #expect(m["samples_trained"] as? Int == transitions)
        #expect(try rl.counters(redisPort: redis.port).trained == appended)
        let bin = try #require(streamrecBinary())
        let e = try runProcess(bin, ["eval", "--checkpoint", ck, "--data", data.appendingPathComponent("heldout.csv").path,
                                     "--history", data.appendingPathComponent("user_behavior.csv").path])
        #expect(e.status == 0, "\(e.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [String: Any])
        #expect(json["model_kind"] as? String == kind && json["events"] as? Int == 120 && json["unknown_users"] as? Int == 0, "\(e.stdout)")
    }
}
