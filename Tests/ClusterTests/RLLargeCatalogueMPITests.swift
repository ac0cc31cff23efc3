import Testing
import Foundation
import TestSupport

/// Every RL family past `full_softmax_items` under `mpirun -np 2`: the sampled softmax's draws,
/// the candidates' sparse rows and the recent-items rows travel through the real MPI collectives,
/// and both ranks end with the same parameters, having trained every transition of the file once.
@Suite(.serialized) struct RLLargeCatalogueMPITests {
    @Test(arguments: ["reinforce", "ddpg", "bcq"])
    func sampledSoftmaxReplicasStayIdentical(kind: String) throws {
        let bin = try #require(streamrecBinary())
        let mpirun = try #require(findExecutable("mpirun"))
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data")
        // 150 items against full_softmax_items 40: the item tables pass the threshold within the first batches.
        let gen = try runProcess(bin, ["gen", "behavior", "--users", "60", "--items", "150", "--events-per-user", "20",
                                       "--seed", "5", "--out", data.path])
        #expect(gen.status == 0, "\(gen.stderr)")
        let file = data.appendingPathComponent("user_behavior.csv")
        let events = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").count
        let config = dir.appendingPathComponent("\(kind).yaml")
        try """
        model:
          kind: \(kind)
          embedding_size: 8
          hidden_size: 16
          full_softmax_items: 40
          sampled_items: 16
        train:
          batch_size: 32
          checkpoint_every: 20
        """.write(to: config, atomically: true, encoding: .utf8)
        let ck = dir.appendingPathComponent("ck").path
        let r = try runProcess(mpirun, ["-np", "2", "--oversubscribe", bin, "train", "--config", config.path, "--data", file.path,
                                        "--checkpoint-dir", ck], environment: mpiTestEnvironment, timeout: .seconds(240))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let digests = r.stdout.split(separator: "\n").compactMap { l in l.range(of: "fnv1a64=").map { String(l[$0.upperBound...].prefix(16)) } }
        #expect(digests.count == 2 && Set(digests).count == 1, "replicas differ: \(r.stdout)")
        let latest = try String(contentsOfFile: ck + "/LATEST", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let manifest = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: "\(ck)/\(latest)/manifest.json"))) as? [String: Any])
        #expect(manifest["model_kind"] as? String == kind)
        #expect(manifest["samples_trained"] as? Int == events, "every event of the file is one transition, trained once")
        // The checkpoint scores the whole catalogue again: eval ranks every item.
        let e = try runProcess(bin, ["eval", "--checkpoint", ck, "--data", data.appendingPathComponent("heldout.csv").path,
                                     "--history", file.path])
        #expect(e.status == 0, "\(e.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [String: Any])
        #expect(json["events"] as? Int == 60 && json["unknown_users"] as? Int == 0)
    }
}
