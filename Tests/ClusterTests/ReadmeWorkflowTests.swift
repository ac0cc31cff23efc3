import Testing
import Foundation
import TestSupport
import Streaming

/// The README's commands as a new user runs them, with the shipped configs and every default
/// (only addresses and paths substituted, and --until-idle so the commands end): gen → stats →
/// produce → featurize (its default batch size) → `mpirun -np 2 train --config
/// configs/widedeep.yaml --source redis --stats …`, with `--preset small` and with the default
/// model. Issue 9 found the trainer crashing on exactly this path (featurize then packed 1,024
/// rows for a 1,000-row workspace; `batchesOfAnySizeTrain` covers the sizes around it).
@Suite(.serialized) struct ReadmeWorkflowTests {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

    @Test(arguments: ["small", nil] as [String?])
    func readmeCommandsTrainWithTheShippedConfigs(preset: String?) throws {
        let bin = try #require(streamrecBinary())
        let mpirun = try #require(findExecutable("mpirun"))
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let broker = try BrokerFixture(topics: ["criteo": 8])
        defer { _ = broker.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data").path, ck = dir.appendingPathComponent("checkpoints").path
        let rows = 6_000

        func run(_ args: [String], timeout: Duration = .seconds(180)) throws -> ProcessResult {
            let r = try runProcess(bin, args, timeout: timeout)
            #expect(r.status == 0, "streamrec \(args.joined(separator: " ")):\n\(r.stdout)\n\(r.stderr)")
            return r
        }
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        _ = try run(["gen", "--rows", "\(rows)", "--holdout-rows", "500", "--out", "\(data)/train.tsv"])
        _ = try run(["stats", "--data", "\(data)/train.tsv", "--out", "\(data)/features.stats", "--min-frequency", "10"])
        _ = try run(["produce", "--data", "\(data)/train.tsv", "--topic", "criteo", "--bootstrap-file", broker.bootstrapFile.path])
        _ = try run(["featurize", "--shard", "0", "--shards", "1", "--topic", "criteo", "--bootstrap", broker.bootstrapServers,
                     "--redis", "127.0.0.1:\(redis.port)", "--stats", "\(data)/features.stats", "--until-idle", "3"])

        var train = ["-np", "2", "--oversubscribe", bin, "train", "--source", "redis", "--redis", "127.0.0.1:\(redis.port)",
                     "--feature-shards", "8", "--config", repo.appendingPathComponent("configs/widedeep.yaml").path]
        if let preset { train += ["--preset", preset] }
        train += ["--stats", "\(data)/features.stats", "--checkpoint-dir", ck, "--checkpoint-every", "50", "--until-idle", "3"]
        let r = try runProcess(mpirun, train, environment: mpiTestEnvironment, timeout: .seconds(300))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("done ("), "\(r.stdout)")

        let verify = try run(["ckpt", "verify", ck])
        _ = verify
        let show = try run(["ckpt", "show", ck, "--json"])
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])
        let m = (manifest["manifest"] as? [String: Any]) ?? manifest
        #expect(m["samples_trained"] as? Int == rows, "\(show.stdout.prefix(2000))")
        let eval = try run(["eval", "--checkpoint", ck, "--data", "\(data)/train.test.tsv"])
        #expect(eval.stdout.contains("\"auc\""), "\(eval.stdout)")
    }
}
