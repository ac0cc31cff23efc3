import Foundation
import Checkpoint
import FeatureStore
import Features
import Models
import Streaming
import StreamRecNumerics
@testable import Serving

/// A tiny trained REINFORCE model (H = 4, embedding 8, hidden 16) over users u1…u20 (ids 1…20)
/// and items i2…i50 (ids 2…50), of which id 7 has no key (an id the checkpoint cannot name is
/// never recommended); `write(step:)` stores versions as the trainer does.
final class TinyRecommenderFixture: @unchecked Sendable {
    static let historyLength = 4
    static let maxItem: Int32 = 50
    static let keylessItem: Int32 = 7

    let dir: URL
    let root: URL
    let store: CheckpointStore
    let model: ReinforceModel
    let keys: BehaviorKeys
    private var rng = SplitMix64(seed: 11)

    /// `root`: write into another fixture's checkpoints root (mixed kinds); default: a new one.
    init(root: URL? = nil, trainSteps: Int = 4) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("serving-rl-\(UUID().uuidString)")
        self.root = root ?? dir.appendingPathComponent("checkpoints")
        try FileManager.default.createDirectory(at: self.root, withIntermediateDirectories: true)
        var config = ReinforceConfig()
        config.historyLength = Self.historyLength
        config.embeddingSize = 8
        config.hiddenSize = 16
        config.learningRate = 0.01
        config.seed = 3
        model = ReinforceModel(config: config)
        var k = BehaviorKeys()
        for u in Int32(1)...20 { k.users.set("u\(u)", id: u) }
        for i in Int32(2)...Self.maxItem where i != Self.keylessItem { k.items.set("i\(i)", id: i) }
        keys = k
        store = CheckpointStore(directory: self.root, keep: 100)
        model.reserveItems(through: Self.maxItem)  // every item id has a column
        for _ in 0..<trainSteps { trainOnce() }
    }

    private func trainOnce() {
        var t = TransitionBatch(historyLength: Self.historyLength)
        for _ in 0..<64 {
            let state = (0..<Self.historyLength).map { _ in rng.next() % 5 == 0 ? Int32(0) : 2 + Int32(rng.next() % 49) }
            // Actions favour low ids, so the model learns something to rank by.
            let action = 2 + Int32(rng.next() % 49 * (rng.next() % 49) / 49)
            t.append(user: 1 + Int32(rng.next() % 20), state: state, action: action, reward: 1, done: false, time: 0)
        }
        model.trainStep(t, grads: model.makeGradients())
    }

    /// Trains one more step (so versions differ) and writes version `step`.
    @discardableResult
    func write(step: Int, train: Bool = true) throws -> URL {
        if train { trainOnce() }
        let snap = ReinforceCheckpoint.snapshot(model: model, keys: keys,
                                                record: CheckpointRecord(step: step, samplesTrained: step * 64, wallTimeSeconds: 1,
                                                                         metrics: ["pv_ndcg@10": 0.1]))
        return try ReinforceCheckpoint.write(snap, to: store)
    }

    /// Writes a version with a flipped byte in model.safetensors (LATEST points at it).
    @discardableResult
    func writeCorrupt(step: Int) throws -> URL {
        let url = try write(step: step)
        let file = url.appendingPathComponent(CheckpointStore.modelFileName)
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: file)
        return url
    }

    deinit { try? FileManager.default.removeItem(at: dir) }
}

/// Independently of the server: the scores of a checkpoint loaded on its own, and the top n of
/// one row ranked by brute force (every item with a key, not padding/OOV, not masked, finite;
/// score descending, then id ascending).
struct DirectRecommender {
    let loaded: LoadedRecommender

    init(_ checkpoint: URL) throws { loaded = try RecommenderCheckpoints.load(checkpoint) }

    func scores(user: Int32, state: [Int32]) -> [Float] {
        loaded.scorer.scores(users: [user], histories: state)
    }

    func top(user: Int32, state: [Int32], masked: Set<Int32>, n: Int) -> [(item: String, score: Float)] {
        let s = scores(user: user, state: state)
        let ranked = s.indices.filter { j in
            j >= 2 && loaded.keys.items.key(Int32(j)) != nil && !masked.contains(Int32(j)) && s[j].isFinite
        }.sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }
        return ranked.prefix(n).map { (loaded.keys.items.key(Int32($0))!, s[$0]) }
    }
}

/// The state a user has after `items` (one event each, a minute apart), built by the featurizer's
/// own rule; and the state of the transition whose action is the user's NEXT item — what training
/// sees for the action serving is asked to predict. That transition waits for its reward window,
/// so the next event is applied to a copy and its session released.
func featurizedState(items: [Int32], historyLength h: Int = TinyRecommenderFixture.historyLength)
    -> (state: UserState, nextTransitionState: [Int32]) {
    let rule = TransitionRule(historyLength: h, consumedLimit: 100, sessionGapSeconds: 3600)
    var state = UserState()
    var out = rule.emptyBatch()
    var scratch: [Int32] = []
    var time: Int64 = 1_700_000_000
    for item in items {
        rule.apply(user: 1, item: item, behavior: .pv, time: time, to: &state, into: &out, scratch: &scratch)
        time += 60
    }
    var future = state
    var emitted = rule.emptyBatch()
    let nextItem: Int32 = 49
    rule.apply(user: 1, item: nextItem, behavior: .pv, time: time, to: &future, into: &emitted, scratch: &scratch)
    rule.release(user: 1, &future, into: &emitted, scratch: &scratch)
    precondition(emitted.actions.last == nextItem && emitted.done.last == true)  // test helper: the rule's own contract
    return (state, Array(emitted.state(emitted.count - 1)))
}

/// HSET sr:rl:user <user> <packed state>, as the featurizer's commit script writes it.
func writeUserState(_ address: String, user: String, _ state: UserState, prefix: String = "sr") throws {
    let redis = try RedisConnection(address: address)
    let layout = FeatureStoreLayout(prefix: prefix)
    try redis.command(bytes: [Array("HSET".utf8), Array(layout.userStates.utf8), Array(user.utf8), state.encoded()])
}

/// One partition's popular counts in one slide bucket, with the meta and watermark the
/// featurizer writes (`FeatureStoreLayout`, `PopularBucket`).
func writePopularCounts(_ address: String, _ counts: [(String, Int64)], prefix: String = "sr") throws {
    let redis = try RedisConnection(address: address)
    let layout = FeatureStoreLayout(prefix: prefix)
    let slide: Int64 = 60, newest: Int64 = 1_700_000_007, topic = "behavior"
    try redis.command(["HSET", layout.behaviorMeta, "history_length", "\(TinyRecommenderFixture.historyLength)",
                       "consumed_limit", "100", "window_seconds", "600", "slide_seconds", "\(slide)", "lateness_seconds", "30"])
    try redis.command(["HSET", layout.eventWatermarks, "\(topic):0", "\(newest)"])
    let bucket = EventTime.bucket(newest, slide: slide)
    var bytes = PopularBucket.header
    for (item, count) in counts { Array(item.utf8).withUnsafeBytes { PopularBucket.append(key: $0, count: count, to: &bytes) } }
    try redis.command(bytes: [Array("SET".utf8), Array(layout.popular(bucket: bucket, topic: topic, partition: 0).utf8), bytes])
    try redis.command(["ZADD", layout.popularBuckets, "\(bucket)", layout.popularMember(bucket: bucket, topic: topic, partition: 0)])
}

/// One answer of /v1/recommend.
struct RecommendAnswer: Decodable, Equatable {
    struct Item: Decodable, Equatable {
        let item: String
        let score: Float
    }
    let user: String?
    let items: [Item]
    let source: String
    let model_version: String
    let step: Int
}

struct RecommendBatchAnswer: Decodable {
    let results: [RecommendAnswer]
}

func decodeAnswer(_ text: String) throws -> RecommendAnswer {
    try JSONDecoder().decode(RecommendAnswer.self, from: Data(text.utf8))
}
