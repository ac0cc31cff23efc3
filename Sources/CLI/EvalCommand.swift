import Models
import ArgumentParser
import Foundation
import Logging
import Checkpoint
import Features
import StreamRecNumerics
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint and print JSON: Wide&Deep on a labelled Criteo file (auc, logloss), an RL model on held-out behaviour events (ndcg@10, hr@10).",
        discussion: """
        --checkpoint takes a checkpoint directory, a checkpoints root (its LATEST is used) or a \
        step number (resolved in --checkpoint-dir). Refused rows are listed on stderr and counted \
        in `rejected`; they do not make the command fail.

        Wide&Deep: --data is a labelled Criteo file. When DATA.prob exists (written by \
        `streamrec gen`), the oracle AUC of the true probabilities is printed too.

        RL models (reinforce): --data is held-out behaviour events (user,item,behavior,time, e.g. \
        heldout.csv from `streamrec gen behavior`), --history the events before them \
        (user_behavior.csv). For each held-out event every item except those the user consumed \
        before it is ranked by the model's score given the user's state before the event (the \
        last history_length items, as training builds it); NDCG@10 = 1/log2(1 + rank) when the \
        true item's rank <= 10, else 0; HR@10 = 1 when rank <= 10. A true item the user consumed \
        before, or one the model never saw, counts as a miss. The popularity baseline (items by \
        their count in --history, consumed items masked) is scored on the same events. When \
        summary.json from `streamrec gen behavior` sits beside --data, its oracle figures are \
        printed too.
        """)

    @Option(help: "Checkpoint directory, checkpoints root, or step number.") var checkpoint: String
    @Option(help: "Checkpoints root used to resolve a step number.") var checkpointDir: String = "checkpoints"
    @Option(help: "Labelled Criteo-format file (Wide&Deep), or held-out behaviour events (RL models).") var data: String
    @Option(help: "Behaviour events before the held-out ones (RL models): users' states and the popularity baseline.") var history: String?
    @Option(help: "Rows (events) per scoring batch.") var batchSize: Int = 1000
    @OptionGroup(title: "Logging") var logging: LogOptions

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1 (got \(batchSize))") }
    }

    func run() throws {
        _ = try logging.start("eval", tag: "eval:")
        BLAS.setThreads(1)
        let dir: URL
        if FileManager.default.fileExists(atPath: checkpoint) {
            dir = try CheckpointStore(directory: URL(fileURLWithPath: checkpoint), keep: 1000).resolve(checkpoint)
        } else {
            dir = try CheckpointStore(directory: URL(fileURLWithPath: checkpointDir), keep: 1000).resolve(checkpoint)
        }
        let kind = try CheckpointStore.loadManifest(dir).modelKind
        if RecommenderCheckpoints.kinds.contains(kind) { return try runNextItem(dir) }
        if history != nil {
            throw ValidationError("--history is for RL checkpoints; \(dir.path) holds a '\(kind)' model")
        }
        let loaded = try WideDeepCheckpoint.load(dir)
        let result = try evaluate(model: loaded.model, stats: loaded.stats, path: data, batchSize: batchSize) { r in
            Logger(label: "eval").tagged("eval:").warning("rejected \(r)")
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

    func runNextItem(_ dir: URL) throws {
        let loaded = try RecommenderCheckpoints.load(dir)
        if loaded.keys.items.count == 0 {
            throw ValidationError("\(dir.path) records no item keys (items.keys), so held-out events cannot be matched to the "
                                  + "model's items: evaluate a checkpoint written by this version of streamrec train")
        }
        let r = try NextItemEvaluator.evaluate(model: loaded.scorer, keys: loaded.keys, path: data, historyPath: history,
                                               batchSize: min(batchSize, 256)) { file, rejection in
            Logger(label: "eval").tagged("eval:").warning("rejected \(file) \(rejection)")
        }
        var out: [String: Any] = [
            "ndcg@10": r.ndcg, "hr@10": r.hitRate, "events": r.events, "rejected": r.rejected,
            "rejected_by_reason": r.rejectedByReason, "unknown_items": r.unknownItems, "unknown_users": r.unknownUsers,
            "history_events": r.historyEvents, "model_kind": loaded.manifest.modelKind,
            "checkpoint": dir.path, "step": loaded.manifest.step, "samples_trained": loaded.manifest.samplesTrained,
            "popularity": r.popularityNDCG.map { ["ndcg@10": $0, "hr@10": r.popularityHitRate ?? 0] as [String: Any] } as Any? ?? NSNull(),
        ]
        if let oracle = generatorOracle(besides: data) { out["oracle"] = oracle }
        let json = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }
}

/// The oracle figures of summary.json beside a `streamrec gen behavior` held-out file (nil when
/// there is none or it does not describe the same held-out events).
func generatorOracle(besides data: String) -> [String: Double]? {
    let path = ((data as NSString).deletingLastPathComponent as NSString).appendingPathComponent("summary.json")
    guard let d = FileManager.default.contents(atPath: path),
          let json = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
          let oracle = json["oracle"] as? [String: Any] else { return nil }
    let names = ["ndcg": "ndcg@10", "hr": "hr@10", "expected_ndcg": "expected_ndcg@10", "expected_hr": "expected_hr@10"]
    var out: [String: Double] = [:]
    for (k, v) in oracle { if let x = v as? Double, let name = names[k] { out[name] = x } }
    return out.isEmpty ? nil : out
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
