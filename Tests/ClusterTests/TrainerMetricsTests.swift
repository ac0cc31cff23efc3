import Testing
import Foundation
import Observability
import TestSupport
import Features
import FeatureStore
import Streaming
import StreamRecNumerics

/// `streamrec train --source redis --metrics-port P` under mpirun: rank 0 serves GET /metrics,
/// whose figures agree with the job's own summary and checkpoint.
@Suite(.serialized) struct TrainerMetricsTests {
    let configPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../configs/widedeep.yaml").standardized.path

    /// 30 batches of 100 rows over 4 shards, each stamped as produced `ageMs` ago (batch i a
    /// millisecond later than batch i − 1). Returns the stats file and the newest produced time.
    func fill(redisPort: Int, dir: URL, ageMs: Int64) throws -> (stats: String, newestProducedMs: Int64) {
        let data = dir.appendingPathComponent("rows.tsv")
        try writeSynthetic(rows: 3_000, seed: 21, to: data, probabilitiesTo: dir.appendingPathComponent("rows.prob"))
        let (stats, _) = try FeatureStats.compute(file: data.path, minFrequency: 2)
        let statsPath = dir.appendingPathComponent("features.stats")
        try stats.write(to: statsPath)
        let lines = try String(contentsOf: data, encoding: .utf8).split(separator: "\n").map(String.init)
        let store = FeatureStore(redis: try RedisConnection(host: "127.0.0.1", port: redisPort), prefix: "sr")
        let base = Int64(Date().timeIntervalSince1970 * 1000) - ageMs
        var newest: Int64 = 0
        for i in 0..<30 {
            let b = try #require(BatchPacker.pack(lines: lines[(i * 100)..<((i + 1) * 100)], encoder: FeatureEncoder(stats: stats), batchSize: 100).batches.first)
            let p = i % 4
            let first = try store.readProgress(topic: "criteo", partition: Int32(p)), last = first + Int64(b.count) - 1
            newest = base + Int64(i)
            let bytes = FeatureBatchCodec.encode(b, source: FeatureBatchSource(topic: "criteo", partition: Int32(p), firstOffset: first,
                                                                             lastOffset: last, producedAtMs: newest))
            _ = try store.commit(CommitUnit(topic: "criteo", partition: Int32(p), firstOffset: first, lastOffset: last,
                                            shard: p, encodedBatch: bytes, rows: b.count))
        }
        return (statsPath.path, newest)
    }

    @Test func rankZeroServesMetricsThatMatchTheRun() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (stats, newest) = try fill(redisPort: redis.port, dir: dir, ageMs: 3_000)
        let ck = dir.appendingPathComponent("ck").path
        let port = try freeLoopbackPort()
        let bin = try #require(streamrecBinary())
        let mpirun = try #require(findExecutable("mpirun"))
        let job = try BackgroundProcess(mpirun, ["--oversubscribe", "-np", "2", bin, "train", "--source", "redis",
                                                 "--redis", "127.0.0.1:\(redis.port)", "--config", configPath, "--preset", "small",
                                                 "--stats", stats, "--feature-shards", "4", "--checkpoint-every", "3", "--keep", "3",
                                                 "--log-every", "5", "--checkpoint-dir", ck, "--metrics-port", "\(port)"],
                                        environment: mpiTestEnvironment, log: dir.appendingPathComponent("train.log"))
        defer { job.kill() }
        // Only rank 0 serves (rank 1 would fail to bind the same port and end the job).
        var m = try PrometheusText("")
        #expect(poll(for: 180) {
            guard let s = try? scrapeMetrics(port: port) else { return false }
            m = s
            // Every sample trained and every checkpoint submitted so far written.
            let written = s.value("streamrec_trainer_checkpoints_total") ?? 0
            return s.value("streamrec_trainer_samples_total") == 3_000 && written >= 4
                && s.value("streamrec_trainer_checkpoint_stall_seconds_count") == written
                && s.value("streamrec_trainer_last_checkpoint_step") == Double(Int(s.value("streamrec_trainer_step") ?? 0) / 3 * 3)
        }, "\(job.output)\n\(m.samples.filter { $0.name.hasPrefix("streamrec_trainer") })")
        #expect(job.output.components(separatedBy: "metrics on http://127.0.0.1:\(port)/metrics").count == 2, "announced once: \(job.output)")
        let step = try #require(m.value("streamrec_trainer_step"))
        #expect(step >= 15, "3000 samples in steps of at most 2 × 100")
        #expect(m.value("streamrec_trainer_ranks") == 2)
        #expect(m.value("streamrec_trainer_checkpoint_write_seconds_count") == m.value("streamrec_trainer_checkpoints_total"))
        #expect(m.value("streamrec_trainer_checkpoint_stall_seconds_count") == m.value("streamrec_trainer_checkpoints_total"))
        #expect(m.value("streamrec_trainer_step_duration_seconds_count") == step)
        for phase in ["compute", "communication"] {
            #expect((m.value("streamrec_trainer_step_seconds_total", ["phase": phase]) ?? 0) > 0, "\(phase)")
        }
        #expect(m.value("streamrec_trainer_step_seconds_total", ["phase": "data_wait"]) != nil)
        for term in ["wide_loss", "deep_loss"] {
            let loss = try #require(m.value("streamrec_trainer_loss", ["term": term]), "\(term)")
            #expect(loss > 0 && loss < 10, "\(term) \(loss)")
        }
        let auc = try #require(m.value("streamrec_trainer_progressive", ["metric": "pv_auc"]))
        #expect(auc > 0.5 && auc <= 1, "progressive AUC \(auc)")
        // Produced → trained: every batch, each produced at least 3 s before.
        #expect(m.value("streamrec_trainer_freshness_seconds_count") == 30)
        #expect((m.value("streamrec_trainer_freshness_seconds_sum") ?? 0) >= 30 * 3)
        #expect(m.value("streamrec_trainer_freshness_seconds_bucket", ["le": "2.0"]) == 0)
        for def in Metric.of(.trainer) { #expect(def.seriesNames.contains { m.names.contains($0) }, "missing \(def.name)") }

        // Stop (SIGTERM to rank 0): the run's summary and checkpoint say what the scrape said.
        let rank0 = try #require(job.mpiRank(0))
        kill(rank0, SIGTERM)
        #expect(job.waitForExit(within: 60), "\(job.output)")
        #expect(job.exitStatus == 0, "\(job.output)")
        let done = try #require(job.output.split(separator: "\n").first { $0.hasPrefix("done (") }, "\(job.output)")
        #expect(done.contains(": \(Int(step)) steps, 3000 samples"), "\(done) vs step \(step)")
        let latest = try String(contentsOfFile: ck + "/LATEST", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(ck)/\(latest)/manifest.json"))) as? [String: Any])
        #expect(manifest["step"] as? Int == Int(step))
        // The newest batch's produced time travels into the checkpoint (serve's freshness histogram).
        #expect((manifest["newest_event_produced_ms"] as? NSNumber)?.int64Value == newest)
    }
}
