import Testing
import Foundation
import TestSupport

/// `mpirun -np N streamrec train` end to end: replicas stay bit-identical, uneven data never
/// deadlocks, and the checkpoint counts every sample exactly once.
@Suite(.serialized) struct MPITrainingTests {
    let configPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../configs/widedeep.yaml").standardized.path

    func mpirun(_ n: Int, _ args: [String], timeout: Duration = .seconds(240)) throws -> ProcessResult {
        let bin = try #require(streamrecBinary())
        let mpirun = try #require(findExecutable("mpirun"))
        return try runProcess(mpirun, ["-np", "\(n)", "--oversubscribe", bin] + args,
                              environment: mpiTestEnvironment, timeout: timeout)
    }

    func digests(_ output: String) -> [String] {
        output.split(separator: "\n").compactMap { line in
            guard let r = line.range(of: "fnv1a64=") else { return nil }
            return String(line[r.upperBound...].prefix(16))
        }
    }

    func makeData(_ dir: URL, rows: Int) throws -> String {
        let data = dir.appendingPathComponent("train.tsv").path
        let bin = try #require(streamrecBinary())
        let r = try runProcess(bin, ["gen", "--rows", "\(rows)", "--out", data, "--seed", "9"])
        #expect(r.status == 0, "\(r.stderr)")
        return data
    }

    @Test(arguments: [2, 3])
    func replicasStayBitIdentical(_ ranks: Int) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // 2,350 rows in batches of 100: 24 batches (the last partial), so ranks run out at
        // different steps and some steps have empty contributions.
        let data = try makeData(dir, rows: 2_350)
        let ck = dir.appendingPathComponent("ck").path
        let r = try mpirun(ranks, ["train", "--config", configPath, "--preset", "small",
                                   "--data", data, "--batch-size", "100", "--min-frequency", "2",
                                   "--checkpoint-every", "4", "--log-every", "4", "--checkpoint-dir", ck])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(!r.timedOut)
        let d = digests(r.stdout)
        #expect(d.count == ranks, "\(r.stdout)")
        #expect(Set(d).count == 1, "replicas differ: \(d)")
        #expect(r.stdout.contains("epoch: 1, step: 4, wide_loss: "))
        // Every row trained exactly once across ranks.
        let latest = try String(contentsOfFile: ck + "/LATEST", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(ck)/\(latest)/manifest.json"))) as? [String: Any]
        #expect(manifest?["samples_trained"] as? Int == 2_350)
        let steps = (24 + ranks - 1) / ranks
        #expect(manifest?["step"] as? Int == steps)
    }
}

func temporaryDirectory(_ name: String = #function) throws -> URL { try temporaryTestDirectory(name) }
