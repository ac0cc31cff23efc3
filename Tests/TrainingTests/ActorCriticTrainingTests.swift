import Testing
import Foundation
import Logging
@testable import Training
import Checkpoint
import Features
import Models
import StreamRecNumerics
import TestSupport

// DDPG and BCQ through the training seams: two data-parallel replicas (critic phase, actor phase,
// targets: two gradient exchanges per step) stay bit-identical; checkpoints load back through
// `ModelFamilies` with identical scores; one pass over planted behaviour data ranks the held-out
// next items at least as well as the popularity baseline.

func smallDDPGConfig() -> DDPGConfig {
    var c = DDPGConfig()
    c.historyLength = 4; c.embeddingSize = 8; c.hiddenSize = 16; c.seed = 3
    return c
}

func smallBCQConfig() -> BCQConfig {
    var c = BCQConfig()
    c.historyLength = 4; c.embeddingSize = 8; c.hiddenSize = 16; c.targetSamples = 4; c.seed = 3
    return c
}

/// Held-out next-item NDCG@10 of a model's scores on planted data (each user's last event,
/// ranked from the state of its training events, every item the user consumed before masked):
/// the generator's protocol, as in the REINFORCE learning test.
func heldOutNDCG(data: SyntheticBehavior.Dataset, source: BehaviorFileSource, historyLength H: Int,
                 itemCount N: Int, scores: ([Int32], [Int32]) -> [Float]) -> Double {
    var itemId: [String: Int32] = [:], userId: [String: Int32] = [:]
    var id: Int32 = BehaviorFileSource.firstItemId
    while let key = source.itemKey(id) { itemId[key] = id; id += 1 }
    id = BehaviorFileSource.firstUserId
    while let key = source.userKey(id) { userId[key] = id; id += 1 }
    var history: [Int32: [Int32]] = [:]
    for e in data.training { history[e.user, default: []].append(itemId[SyntheticBehavior.itemID(Int(e.item))]!) }
    var users: [Int32] = [], states: [Int32] = []
    for e in data.heldOut {
        users.append(userId[SyntheticBehavior.userID(Int(e.user))] ?? 0)
        let recent = (history[e.user] ?? []).suffix(H)
        states += [Int32](repeating: 0, count: H - recent.count) + recent
    }
    let z = scores(users, states)
    var ndcg = 0.0
    for (k, e) in data.heldOut.enumerated() {
        guard let target = itemId[SyntheticBehavior.itemID(Int(e.item))] else { continue }
        let consumed = Set(history[e.user] ?? [])
        let row = z[(k * N)..<((k + 1) * N)].map { $0 }
        let t = Int(target), zt = row[t]
        var rank = 1
        for j in 2..<N where j != t && !consumed.contains(Int32(j)) && (row[j] > zt || (row[j] == zt && j < t)) { rank += 1 }
        ndcg += RankingMetrics.ndcg(rank: rank, k: 10)
    }
    return ndcg / Double(data.heldOut.count)
}

@Suite(.serialized) struct ActorCriticTrainingTests {
    static let kinds = ["ddpg", "bcq"]

    func fresh(_ kind: String, crossIntoSampled: Bool = false) throws -> any TrainableModel {
        var ddpg = smallDDPGConfig(), bcq = smallBCQConfig()
        if crossIntoSampled {   // 51 item ids, then 91 from step 3
            ddpg.fullSoftmaxItems = 60; ddpg.sampledItems = 16
            bcq.fullSoftmaxItems = 60; bcq.sampledItems = 16
        }
        let config = kind == "ddpg" ? ddpg.json : bcq.json
        return try ModelFamilies.fresh(kind: kind, config: config, sidecars: [:], batchSize: 64)
    }

    @Test("two replicas training on different halves of each batch through the collectives stay bit-identical (full softmax; crossing into the sampled softmax mid-run)",
          arguments: kinds, [false, true])
    func replicasStayBitIdentical(_ kind: String, crossIntoSampled: Bool) throws {
        let replicas = try (0..<2).map { _ in try fresh(kind, crossIntoSampled: crossIntoSampled) }
        // Each step's batch, split; the second half sometimes holds a larger item id (the item
        // tables grow on both), and one step has nothing for rank 1.
        var plan: [(TransitionBatch, TransitionBatch?)] = []
        for s in 0..<8 {
            let batch = randomTransitions(24, seed: 100 + UInt64(s), maxItem: s == 3 ? 90 : 50)
            plan.append(s == 5 ? (batch, nil) : (slice(batch, 0..<12), slice(batch, 12..<24)))
        }
        if let errors = runReplicas(replicas, plan: plan) { Issue.record("\(errors)"); return }
        #expect(replicas[0].step == 8 && replicas[1].step == 8)
        #expect(replicas[0].parameterDigest == replicas[1].parameterDigest)
        #expect(replicas[0].metrics == replicas[1].metrics)
        #expect(replicas[0].parameterDigest != (try fresh(kind, crossIntoSampled: crossIntoSampled)).parameterDigest)
        let sampled = (replicas[0] as? DDPGTraining)?.model.usesSampledSoftmax ?? (replicas[0] as? BCQTraining)?.model.usesSampledSoftmax
        #expect(sampled == crossIntoSampled)
        // The replicas' state equals, tensor by tensor: parameters, targets, Adam, rows.
        #expect(replicas[0].exportState().tensors == replicas[1].exportState().tensors)
    }

    @Test("a DDPG or BCQ trainer refuses rows, and transitions of another history length, by name", arguments: kinds)
    func refusesIncompatibleBatches(_ kind: String) throws {
        let training = try fresh(kind)
        #expect(training.batchKind == .transitions && training.kind == kind)
        let rows = FeatureBatch(fieldCount: 2, ids: [1, 2], weights: [1, 1], labels: [1])
        do { try training.check(SourcedBatch(.rows(rows), epoch: 1, positions: ["fs:0": "1-0"])); Issue.record("accepted rows") } catch {
            #expect("\(error)".contains("rows") && "\(error)".contains(kind.uppercased()))
        }
        var t = TransitionBatch(historyLength: 3)
        t.append(user: 1, state: [0, 2, 3], action: 4, reward: 1, done: true, time: 0)
        do { try training.check(SourcedBatch(.transitions(t), epoch: 1, positions: ["fs:0": "1-0"])); Issue.record("accepted H = 3") } catch {
            #expect("\(error)".contains("history_length") && "\(error)".contains("3"))
        }
        var oov = TransitionBatch(historyLength: 4)
        oov.append(user: 1, state: [0, 0, 2, 3], action: 1, reward: 1, done: true, time: 0)
        #expect(throws: TrainerError.self) { try training.check(SourcedBatch(.transitions(oov), epoch: 1, positions: [:])) }
        try training.check(SourcedBatch(.transitions(randomTransitions(4, seed: 1)), epoch: 1, positions: [:]))
    }

    @Test("checkpoints round-trip through ModelFamilies: identical parameters, scores and next steps", arguments: kinds)
    func checkpointRoundTrip(_ kind: String) throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let gen = SyntheticBehavior(seed: 4, configuration: .init(users: 60, items: 50, eventsPerUser: 20, holdoutEvents: 1, truthTop: 5))
        try gen.write(gen.generate(threads: 1), to: dir.path)
        var settings = TrainSettings()
        settings.batchSize = 64; settings.checkpointEvery = 4; settings.keepCheckpoints = 2; settings.logEvery = 2
        let store = CheckpointStore(directory: dir.appendingPathComponent("ck"), keep: 2)
        let training = try fresh(kind)
        let source = try BehaviorFileSource(path: dir.appendingPathComponent("user_behavior.csv").path,
                                            rule: TransitionRule(historyLength: 4), batchSize: 64)
        let rl = try #require(training as? any BehaviorTrainable)
        rl.refreshKeys = { source.keys }
        let logs = CapturedLog()
        let summary = try Trainer(model: training, settings: settings, source: source, store: store, logger: logs.logger("train")).run()
        #expect(summary.steps > 4 && summary.metrics["pv_ndcg@10"] != nil && summary.metrics["critic_loss"] != nil)
        let prefix = kind == "ddpg" ? "epoch: 1, step: 2, critic_loss: " : "epoch: 1, step: 2, vae_loss: "
        #expect(logs.lines.contains { $0.hasPrefix(prefix) && $0.contains(", actor_loss: ") && $0.contains(", critic_loss: ")
                                      && $0.contains(", transitions/s: ") && $0.contains(", pv_ndcg@10: ") }, "\(logs.lines.prefix(3))")
        let latest = try #require(store.latest())
        #expect(CheckpointStore.verify(latest).isEmpty)
        let manifest = try CheckpointStore.loadManifest(latest)
        #expect(manifest.modelKind == kind && manifest.step == training.step && manifest.dictionary == nil)
        #expect(manifest.modelConfig["history_length"] == .number(4) && manifest.metrics["pv_ndcg@10"] != nil)

        let loaded = try ModelFamilies.loadTrainable(latest)
        #expect(loaded.kind == kind && loaded.step == training.step && loaded.parameterDigest == training.parameterDigest)
        func scores(_ m: any TrainableModel, _ probe: TransitionBatch) -> [Float] {
            if let d = m as? DDPGTraining { return d.model.scores(users: probe.users, histories: probe.states) }
            return (m as! BCQTraining).model.scores(users: probe.users, histories: probe.states)
        }
        let probe = randomTransitions(16, seed: 9, maxItem: 40)
        #expect(scores(loaded, probe) == scores(training, probe) && !scores(loaded, probe).isEmpty)
        // The keys of the ids travel with the checkpoint and a joiner's state; eval and serving
        // load the version as a NextItemScorer with the same scores.
        let keys = rl.keys
        #expect(keys.items.count > 40 && keys.users.count > 50)
        #expect((loaded as? any BehaviorTrainable)?.keys == keys)
        let recommender = try RecommenderCheckpoints.load(latest)
        #expect(recommender.keys == keys && recommender.scorer.historyLength == 4)
        #expect(recommender.scorer.scores(users: probe.users, histories: probe.states) == scores(training, probe))
        let restored = try ModelFamilies.restore(training.exportState(), batchSize: 64)
        #expect(restored.kind == kind && restored.parameterDigest == training.parameterDigest)
        #expect((restored as? any BehaviorTrainable)?.keys == keys)
        let next = SourcedBatch(.transitions(randomTransitions(32, seed: 10, maxItem: 60)), epoch: 1, positions: [:])
        for m in [training, loaded, restored] {
            _ = try m.trainStep(next, totalSamples: 32, contributors: 1, collectives: LocalCollectives())
        }
        #expect(loaded.parameterDigest == training.parameterDigest && restored.parameterDigest == training.parameterDigest)
        // Another family's checkpoint is refused by kind.
        do {
            if kind == "ddpg" { _ = try BCQCheckpoint.load(latest) } else { _ = try DDPGCheckpoint.load(latest) }
            Issue.record("another family's loader accepted a \(kind) checkpoint")
        } catch {
            #expect("\(error)".contains("'\(kind)'"))
        }
    }

    /// One pass over planted behaviour data (1,000 users, 200 items, ~40 events each).
    func learn(_ kind: String, configure: (inout TrainSettings) -> Void = { _ in }) throws
        -> (ndcg: Double, progressive: Double, popularity: Double, oracle: Double, random: Double, rate: Double) {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let gen = SyntheticBehavior(seed: 21, configuration: .init(users: 1_000, items: 200, eventsPerUser: 40, holdoutEvents: 1, truthTop: 10))
        let data = gen.generate(threads: 2)
        try gen.write(data, to: dir.path)
        let path = dir.appendingPathComponent("user_behavior.csv").path
        let training: any TrainableModel
        let H: Int
        if kind == "ddpg" {
            let c = DDPGConfig()
            H = c.historyLength
            training = DDPGTraining(model: DDPGModel(config: c))
        } else {
            let c = BCQConfig()
            H = c.historyLength
            training = BCQTraining(model: BCQModel(config: c))
        }
        var settings = TrainSettings()
        settings.batchSize = 128; settings.checkpointEvery = 0; settings.logEvery = 1_000_000
        configure(&settings)
        let source = try BehaviorFileSource(path: path, rule: TransitionRule(historyLength: H), batchSize: settings.batchSize)
        let s = try Trainer(model: training, settings: settings, source: source, store: nil, logger: CapturedLog().logger()).run()
        let ndcg: Double
        if let d = training as? DDPGTraining {
            ndcg = heldOutNDCG(data: data, source: source, historyLength: H, itemCount: d.model.itemCount) { d.model.scores(users: $0, histories: $1) }
        } else {
            let b = training as! BCQTraining
            ndcg = heldOutNDCG(data: data, source: source, historyLength: H, itemCount: b.model.itemCount) { b.model.scores(users: $0, histories: $1) }
        }
        return (ndcg, s.metrics["pv_ndcg@10"] ?? 0, data.summary.popularity.ndcg, data.summary.oracle.ndcg, data.summary.random.ndcg,
                Double(s.samples) / max(s.seconds, 1e-9))
    }

    @Test("one pass over planted behaviour data with the default config: held-out NDCG@10 at least the popularity baseline", arguments: kinds)
    func learnsThePlantedBehaviour(_ kind: String) throws {
        let r = try learn(kind)
        print(String(format: "%@ planted data, one pass: held-out NDCG@10 %.4f (progressive %.4f), popularity %.4f, oracle %.4f, random %.4f; %.0f transitions/s",
                     kind.uppercased(), r.ndcg, r.progressive, r.popularity, r.oracle, r.random, r.rate))
        #expect(r.ndcg >= r.popularity, "held-out NDCG@10 \(r.ndcg), popularity \(r.popularity), oracle \(r.oracle)")
        #expect(r.progressive > 2 * r.random, "progressive NDCG@10 \(r.progressive), random \(r.random)")
    }
}
