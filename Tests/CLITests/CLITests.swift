import Testing
import Foundation
import TestSupport

@Suite(.serialized) struct CLITests {
    /// `--help` is part of the interface: every subcommand explains itself and names its options.
    @Test(arguments: [
        (["--help"], ["gen", "stats", "train", "eval", "bench"]),
        (["gen", "--help"], ["--rows", "--out", "--holdout-rows", "--seed", ".prob"]),
        (["stats", "--help"], ["--data", "--out", "--min-frequency", "log1p", "OOV"]),
        (["train", "--help"], ["--config", "--preset", "--data", "--stats", "--checkpoint-dir", "--checkpoint-every", "--epochs", "wide_loss",
                               "--redis", "--prefix", "STREAMREC_REDIS", "First set wins", "--metrics-port", "--metrics-host"]),
        // The shared option groups (Kafka, Redis, --config) and their resolution rule, wherever they apply.
        (["produce", "--help"], ["--format", "criteo|behavior|lines", "--key-field", "--config", "--bootstrap", "--bootstrap-file",
                                 "-X", "STREAMREC_BOOTSTRAP", "127.0.0.1:9092", "First set wins"]),
        (["featurize", "--help"], ["--kind", "criteo", "behavior", "--history-length", "--session-gap-seconds", "--window-seconds",
                                   "--lateness-seconds", "--reward", "--config", "--bootstrap", "--bootstrap-file", "-X", "STREAMREC_BOOTSTRAP",
                                   "--redis", "--prefix", "STREAMREC_REDIS", "127.0.0.1:6379", "First set wins",
                                   "--metrics-port", "--metrics-host"]),
        (["status", "--help"], ["--config", "--bootstrap", "--bootstrap-file", "-X", "--kafka-config", "STREAMREC_BOOTSTRAP", "--topic",
                                "--redis", "--prefix", "STREAMREC_REDIS", "rediss://", "--redis-password-file", "STREAMREC_REDIS_PASSWORD",
                                "--redis-tls-ca", "--redis-tls-cert", "--redis-tls-key"]),
        (["broker", "--help"], ["--config", "--brokers", "--topic", "--partitions", "--bootstrap-file", "kafka.topics"]),
        (["selftest", "kafka", "--help"], ["--config", "--bootstrap", "--bootstrap-file", "-X", "--kafka-config", "STREAMREC_BOOTSTRAP", "mock"]),
        (["selftest", "redis", "--help"], ["--config", "--redis", "--prefix", "STREAMREC_REDIS"]),
        (["bench", "featurize", "--help"], ["-X", "--kafka-config", "--rows", "--partitions", "--kind", "--users"]),
        (["popular", "--help"], ["--n", "--json", "--redis", "--prefix", "STREAMREC_REDIS", "late"]),
        (["serve", "--help"], ["--checkpoints", "--port", "--config", "--redis", "--prefix", "STREAMREC_REDIS",
                               "--feature-store-timeout-ms", "--no-feature-store", "/v1/popular", "/v1/predict", "/v1/recommend",
                               "--max-users", "--max-history"]),
        (["dashboard", "--help"], ["--redis", "--prefix", "STREAMREC_REDIS", "--topic", "--bootstrap", "--serve", "--no-serve",
                                   "--checkpoints", "--host", "--port", "--refresh", "/dashboard.json", "127.0.0.1"]),
        (["eval", "--help"], ["--checkpoint", "--data", "auc"]),
        (["bench", "train", "--help"], ["--json", "--steps", "sgemm"]),
        (["ckpt", "--help"], ["list", "show", "diff", "verify", "LATEST"]),
    ])
    func helpExplainsEachCommand(_ args: [String], _ needles: [String]) throws {
        let r = try StreamRecBinary.run(args)
        #expect(r.status == 0)
        for n in needles { #expect(r.stdout.contains(n), "`streamrec \(args.joined(separator: " "))` help lacks \(n)") }
    }

    @Test func unknownPresetIsAClearError() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try "1\t" .write(to: dir.appendingPathComponent("d.tsv"), atomically: true, encoding: .utf8)
        let r = try StreamRecBinary.run(["train", "--config", configPath, "--preset", "huge", "--data", dir.appendingPathComponent("d.tsv").path])
        #expect(r.status != 0)
        #expect(r.stderr.contains("unknown preset 'huge'"))
    }

    @Test("--log-format json: the lines and the error that ends the command are JSON objects; a bad --log-level is refused by name")
    func jsonLogFormat() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("d.tsv")
        try "1\t5\n".write(to: data, atomically: true, encoding: .utf8)
        let r = try StreamRecBinary.run(["stats", "--data", data.path, "--out", dir.appendingPathComponent("s").path,
                                         "--log-format", "json"])
        let lines = r.stderr.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] is String && object?["message"] is String && object?["time"] is String, "\(line)")
        }
        #expect(lines.contains { $0.contains("\"level\":\"warning\"") && $0.contains("rejected") && $0.contains("\"component\":\"stats\"") })
        // The error that ends a command after it started logging as JSON.
        let failed = try StreamRecBinary.run(["train", "--config", configPath, "--preset", "huge", "--data", data.path],
                                             environment: ["STREAMREC_LOG_FORMAT": "json"])
        #expect(failed.status != 0)
        let last = try #require(failed.stderr.split(separator: "\n").last)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any], "\(failed.stderr)")
        #expect(object["level"] as? String == "critical")
        #expect((object["message"] as? String)?.contains("unknown preset 'huge'") == true)
        let bad = try StreamRecBinary.run(["stats", "--data", data.path, "--out", "x", "--log-level", "loud"])
        #expect(bad.status != 0 && bad.stderr.contains("--log-level"), "\(bad.stderr)")
    }

    @Test func unknownModelKindIsAClearError() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try "1\t" .write(to: dir.appendingPathComponent("d.tsv"), atomically: true, encoding: .utf8)
        let config = dir.appendingPathComponent("c.yaml")
        try "model:\n  kind: dqn\n".write(to: config, atomically: true, encoding: .utf8)
        let r = try StreamRecBinary.run(["train", "--config", config.path, "--data", dir.appendingPathComponent("d.tsv").path])
        #expect(r.status != 0)
        #expect(r.stderr.contains("model.kind is 'dqn'") && r.stderr.contains("widedeep"), "\(r.stderr)")
    }

    var configPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../configs/widedeep.yaml").standardized.path
    }

    /// gen → stats → train → eval through the real binary, small shapes.
    @Test func endToEndPipeline() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("train.tsv").path
        var r = try StreamRecBinary.run(["gen", "--rows", "3000", "--holdout-rows", "1000", "--out", data, "--seed", "4"])
        #expect(r.status == 0, "\(r.stderr)")
        let test = dir.appendingPathComponent("train.test.tsv").path
        #expect(FileManager.default.fileExists(atPath: test) && FileManager.default.fileExists(atPath: test + ".prob"))

        let stats = dir.appendingPathComponent("stats.tsv").path
        r = try StreamRecBinary.run(["stats", "--data", data, "--out", stats, "--min-frequency", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("3000 rows, 0 rejected"))

        let ck = dir.appendingPathComponent("ck").path
        r = try StreamRecBinary.run(["train", "--config", configPath, "--preset", "small", "--data", data, "--stats", stats,
                                     "--batch-size", "500", "--checkpoint-every", "2", "--keep", "2", "--log-every", "2",
                                     "--checkpoint-dir", ck])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("epoch: 1, step: 2, wide_loss: "))
        #expect(r.stdout.contains("deep_loss: "))
        let latest = try String(contentsOfFile: ck + "/LATEST", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(latest == "step-000000000006")
        let versions = try FileManager.default.contentsOfDirectory(atPath: ck).filter { $0.hasPrefix("step-") }.sorted()
        #expect(versions == ["step-000000000004", "step-000000000006"])

        r = try StreamRecBinary.run(["eval", "--checkpoint", ck, "--data", test])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["rows"] as? Int == 1000)
        #expect(json["rejected"] as? Int == 0)
        #expect(json["samples_trained"] as? Int == 3000)
        let auc = try #require(json["auc"] as? Double)
        #expect(auc > 0.5 && auc < 1)
        #expect((json["oracle_auc"] as? Double ?? 0) > 0.7)

        // Checkpoint inspection.
        r = try StreamRecBinary.run(["ckpt", "list", ck, "--json"])
        let list = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        #expect(list.map { $0["step"] as? Int } == [4, 6])
        #expect(list.last?["latest"] as? Bool == true)
        r = try StreamRecBinary.run(["ckpt", "show", ck, "--json"])
        let shown = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect((shown["embedding_rows"] as? Int ?? 0) > 1000)
        let tensors = try #require(shown["tensors"] as? [[String: Any]])
        #expect(tensors.contains { $0["name"] as? String == "deep.embedding.weight" && ($0["shape"] as? [Int])?.last == 16 })
        // An independent reader (Python + numpy, parsing the safetensors layout by hand) sees
        // the same tensors and values as `ckpt show`.
        let modelFile = ck + "/step-000000000006/model.safetensors"
        let py = try runProcess("/usr/bin/env", ["python3", "-c", """
        import json, struct, sys, numpy as np
        raw = open(sys.argv[1], 'rb').read()
        n = struct.unpack('<Q', raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        out = {}
        for name, info in header.items():
            if name == '__metadata__': continue
            a, b = info['data_offsets']
            arr = np.frombuffer(raw[8 + n + a: 8 + n + b], dtype={'F32': '<f4', 'I32': '<i4'}[info['dtype']]).reshape(info['shape'])
            out[name] = {'shape': list(arr.shape), 'sum': float(arr.astype(np.float64).sum())}
        print(json.dumps(out))
        """, modelFile])
        #expect(py.status == 0, "\(py.stderr)")
        let fromPython = try #require(try JSONSerialization.jsonObject(with: Data(py.stdout.utf8)) as? [String: [String: Any]])
        #expect(Set(fromPython.keys) == Set(tensors.compactMap { $0["name"] as? String }))
        for t in tensors {
            let name = try #require(t["name"] as? String)
            #expect(fromPython[name]?["shape"] as? [Int] == t["shape"] as? [Int], "\(name)")
            let count = (t["shape"] as? [Int] ?? []).reduce(1, *)
            if count > 0, let mean = t["mean"] as? Double, let sum = fromPython[name]?["sum"] as? Double {
                #expect(abs(sum - mean * Double(count)) <= 1e-6 * max(1, abs(sum)) + 1e-6, "\(name)")
            }
        }

        r = try StreamRecBinary.run(["ckpt", "diff", ck + "/4", ck + "/6", "--json"])
        let diff = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        let emb = try #require(diff.first { $0["name"] as? String == "deep.embedding.weight" })
        #expect((emb["rows_changed"] as? Int ?? 0) > 0)
        #expect(emb["status"] as? String == "changed")
        r = try StreamRecBinary.run(["ckpt", "verify", ck])
        #expect(r.status == 0 && r.stdout.hasPrefix("OK"))
        let model = ck + "/step-000000000004/model.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: model))
        bytes[bytes.count / 2] ^= 0x55
        try bytes.write(to: URL(fileURLWithPath: model))
        r = try StreamRecBinary.run(["ckpt", "verify", ck + "/4", "--json"])
        #expect(r.status != 0)
        #expect(r.stdout.contains("\"ok\" : false"))

        // Eval by step number, resolved in --checkpoint-dir.
        r = try StreamRecBinary.run(["eval", "--checkpoint", "6", "--checkpoint-dir", ck, "--data", test])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("\"step\":6"))
        // The corrupted version is refused, not silently used.
        r = try StreamRecBinary.run(["eval", "--checkpoint", "4", "--checkpoint-dir", ck, "--data", test])
        #expect(r.status != 0)
        #expect(r.stderr.contains("failed verification"))
    }

    /// Rows in Criteo's own layout (negative I2, missing values, empty categories, CRLF) train and
    /// evaluate cleanly; a malformed row is reported on stderr and counted, not fatal.
    @Test func criteoFormatSampleRunsCleanly() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/criteo_format_sample.tsv").path
        let ck = dir.appendingPathComponent("ck").path
        var r = try StreamRecBinary.run(["train", "--config", configPath, "--preset", "small", "--data", fixture,
                                         "--batch-size", "4", "--min-frequency", "1", "--checkpoint-dir", ck])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("11 samples"))
        #expect(r.stdout.contains("0 rows rejected"))

        let mixed = dir.appendingPathComponent("mixed.tsv")
        let good = try String(contentsOfFile: fixture, encoding: .utf8)
        try (good + "1\tabc\n" + "2" + String(repeating: "\t", count: 39) + "\n").write(to: mixed, atomically: true, encoding: .utf8)
        r = try StreamRecBinary.run(["eval", "--checkpoint", ck, "--data", mixed.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("\"rejected\":2"))
        #expect(r.stdout.contains("\"rows\":11"))
        #expect(r.stderr.contains("wrong_field_count") || r.stderr.contains("expected"))
        #expect(r.stderr.contains("bad_label") || r.stderr.contains("label"))
    }
}
