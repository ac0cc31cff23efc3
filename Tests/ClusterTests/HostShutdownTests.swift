import Testing
import Foundation
import TestSupport
import Streaming

/// A host shutdown: Redis, the broker, produce, featurize, the MPI trainer and the server all get
/// SIGTERM at the same moment, so each loses its peers while it stops. Every one must still exit
/// within a bound (issue 9 found featurize hanging forever in exactly this case).
@Suite(.serialized) struct HostShutdownTests {
    @Test func everythingStopsWhenEverythingGetsSigtermAtOnce() throws {
        let bin = try #require(streamrecBinary())
        let mpirun = try #require(findExecutable("mpirun"))
        let redisServer = try #require(findExecutable("redis-server"))
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func log(_ name: String) -> URL { dir.appendingPathComponent("\(name).log") }
        let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../configs").standardized

        let redisPort = try freeLoopbackPort()
        let redis = try BackgroundProcess(redisServer, ["--port", "\(redisPort)", "--bind", "127.0.0.1", "--dir", dir.path,
                                                        "--save", "", "--appendonly", "no"], log: log("redis"))
        defer { redis.kill() }
        #expect(poll(for: 10) { (try? RedisConnection(host: "127.0.0.1", port: redisPort).command(["PING"]).text) == "PONG" })
        let bootstrapFile = dir.appendingPathComponent("bootstrap").path
        let broker = try BackgroundProcess(bin, ["broker", "--config", "/dev/null", "--brokers", "1", "--topic", "criteo",
                                                 "--partitions", "8", "--bootstrap-file", bootstrapFile], log: log("broker"))
        defer { broker.kill() }
        #expect(poll(for: 20) { FileManager.default.fileExists(atPath: bootstrapFile) }, "\(broker.output)")
        let bootstrap = try String(contentsOfFile: bootstrapFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)

        let data = dir.appendingPathComponent("rows.tsv").path, stats = dir.appendingPathComponent("features.stats").path
        #expect(try runProcess(bin, ["gen", "--rows", "30000", "--out", data]).status == 0)
        #expect(try runProcess(bin, ["stats", "--data", data, "--out", stats]).status == 0)
        let ck = dir.appendingPathComponent("ck").path
        let produce = try BackgroundProcess(bin, ["produce", "--config", "/dev/null", "--data", data, "--topic", "criteo",
                                                  "--bootstrap", bootstrap, "--rate", "2000"], log: log("produce"))
        defer { produce.kill() }
        let featurize = try BackgroundProcess(bin, ["featurize", "--shard", "0", "--shards", "1", "--topic", "criteo", "--bootstrap", bootstrap,
                                                    "--redis", "127.0.0.1:\(redisPort)", "--stats", stats, "--batch-size", "200"],
                                              log: log("featurize"))
        defer { featurize.kill() }
        let train = try BackgroundProcess(mpirun, ["-np", "2", "--oversubscribe", bin, "train", "--source", "redis",
                                                   "--redis", "127.0.0.1:\(redisPort)", "--config", configs.appendingPathComponent("widedeep.yaml").path,
                                                   "--preset", "small", "--stats", stats, "--checkpoint-dir", ck, "--checkpoint-every", "5"],
                                          environment: mpiTestEnvironment, log: log("train"))
        defer { train.kill() }
        let port = try freeLoopbackPort()
        let serve = try BackgroundProcess(bin, ["serve", "--checkpoints", ck, "--port", "\(port)"], log: log("serve"))
        defer { serve.kill() }

        // Everything busy: rows flowing, a model trained and served.
        #expect(poll(for: 180) { serve.output.contains("serving step-") }, "train: \(train.output)\nserve: \(serve.output)")
        #expect(produce.isRunning, "produce ended before the shutdown: \(produce.output)")

        let all = [("redis", redis), ("broker", broker), ("produce", produce), ("featurize", featurize), ("train", train), ("serve", serve)]
        for (_, p) in all { kill(p.pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(40)
        for (name, p) in all {
            #expect(p.waitForExit(within: max(0, deadline.timeIntervalSinceNow)), "\(name) still running 40 s after SIGTERM: \(p.output.suffix(2000))")
        }
        #expect(featurize.exitStatus == 0, "\(featurize.output.suffix(2000))")
        #expect(serve.exitStatus == 0, "\(serve.output.suffix(2000))")
        #expect(train.output.contains("received SIGTERM"), "\(train.output.suffix(2000))")
    }
}
