import Models
import ArgumentParser
import Foundation
import Checkpoint
import Features
import StreamRecNumerics
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a labelled Criteo file with a checkpoint and print JSON (auc, logloss, rows, rejected).",
        discussion: """
        --checkpoint takes a checkpoint directory, a checkpoints root (its LATEST is used) or a \
        step number (resolved in --checkpoint-dir). Refused rows are listed on stderr and counted \
        in `rejected`; they do not make the command fail. When DATA.prob exists (written by \
        `streamrec gen`), the oracle AUC of the true probabilities is printed too.
        """)

    @Option(help: "Checkpoint directory, checkpoints root, or step number.") var checkpoint: String
    @Option(help: "Checkpoints root used to resolve a step number.") var checkpointDir: String = "checkpoints"
    @Option(help: "Labelled Criteo-format file.") var data: String
    @Option(help: "Rows per scoring batch.") var batchSize: Int = 1000

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1 (got \(batchSize))") }
    }

    func run() throws {
        BLAS.setThreads(1)
        let dir: URL
        if FileManager.default.fileExists(atPath: checkpoint) {
            dir = try CheckpointStore(directory: URL(fileURLWithPath: checkpoint), keep: 1000).resolve(checkpoint)
        } else {
            dir = try CheckpointStore(directory: URL(fileURLWithPath: checkpointDir), keep: 1000).resolve(checkpoint)
        }
        let loaded = try WideDeepCheckpoint.load(dir)
        let result = try evaluate(model: loaded.model, stats: loaded.stats, path: data, batchSize: batchSize) { r in
            FileHandle.standardError.write(Data("rejected \(r)\n".utf8))
        }
        var out: [String: Any] = [
            "auc": result.auc as Any? ?? NSNull(), "logloss": result.logloss, "rows": result.rows,
            "rejected": result.rejected, "rejected_by_reason": result.rejectedByReason,
            "checkpoint": dir.path, "step": loaded.manifest.step, "samples_trained": loaded.manifest.samplesTrained,
        ]
        if let oracle = try oracleAUC(dataPath: data) { out["oracle_auc"] = oracle }
        let json = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }
}

/// AUC of the planted probabilities in DATA.prob against DATA's labels (nil without a .prob file).
func oracleAUC(dataPath: String) throws -> Double? {
    let probPath = dataPath + ".prob"
    guard FileManager.default.fileExists(atPath: probPath) else { return nil }
    let probs = try String(contentsOfFile: probPath, encoding: .utf8).split(separator: "\n").compactMap { Float($0) }
    var labels: [Float] = []
    let reader = try LineReader(path: dataPath)
    try reader.forEachLine { line, _ in
        labels.append(line.first == UInt8(ascii: "1") ? 1 : 0)
    }
    guard probs.count == labels.count else { return nil }
    return rocAUC(scores: probs, labels: labels)
}
