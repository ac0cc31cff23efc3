// Synthetic user-behaviour data from a planted sequential model (`streamrec gen behavior`): the
// RL counterpart of SyntheticCriteo. Writes FlinkRL/DBRL's Tianchi files (headerless CSV) plus a
// held-out split and the generator's true next-item distribution for every held-out event, so an
// evaluator can compare a model's NDCG@10 / HR@10 with the oracle's.
//
// THE PLANTED MODEL (d = `dimension`, all vectors in R^d; every draw from SplitMix64):
//
//   Items.  C categories with unit centres μ_c ~ normalize(N(0, I)). Item i is in category c(i)
//           (uniform), has latent vector v_i = normalize(μ_c(i) + `itemSpread`·ε_i), ε_i ~ N(0, I/d),
//           and popularity pop_i ∝ (π(i) + 1)^(−`popularityExponent`) (Zipf-like; π = a random
//           permutation of the items, so ids say nothing about popularity). Each category has a few
//           shops and `brandsPerCategory` brands; an item's shop and brand are drawn among them.
//   Users.  sex ∈ {0, 1}, age ∈ 1…8, pur_power ∈ 1…9 (uniform); taste
//           u = normalize(z + 0.5·s_sex + 0.5·g_age), z, s, g ~ N(0, I/d) (demographics shift tastes).
//   Next item.  Given the user's history h_1 … h_t (all distinct items, in time order), the next
//           item is drawn from the mixture, over the items NOT in the history (consumed items
//           have probability 0, so next-item evaluation with consumed items masked is exact):
//
//             P(i | u, h) = (1 − λ) · w_u(i) / Σ_{k∉h} w_u(k)
//                         + λ / |R| · Σ_{j∈R} n_j(i) / Σ_{k∈N(j), k∉h} n_j(k)
//
//             w_u(i) = pop_i · exp(a · u·v_i)                     taste × popularity, a = `tasteWeight`
//             n_j(i) = sqrt(pop_i) · exp(b · v_j·v_i), i ∈ N(j)   b = `recentWeight`; N(j) = the
//                      `neighbours` items of j's category (j excluded) with the largest n_j(i)
//             R      = the last `recentItems` items of the history whose N(j) still has an
//                      unconsumed item (the recent-items context)
//             λ      = `recentShareInSession` if the event continues a session,
//                      `recentShareNewSession` if it starts one, 0 if R is empty.
//
//   Behaviour.  Given the item, softmax over (pv, cart, fav, buy) of the logits
//           (0, −2.8 + 1.5·α, −3.2 + 1.5·α, −3.6 + 2.5·α + 0.15·(pur_power − 5)), α = u·v_i:
//           pv is by far the most frequent; buy is rarer and likelier for high-affinity items.
//   Time.   A user's events come in sessions of geometrically distributed length (mean
//           `meanSessionEvents`: after each event the session ends with probability 1/mean);
//           within a session consecutive events are exp(N(ln `medianEventGap`, 1)) seconds apart,
//           rounded, clamped to [1, `maxEventGap`] (seconds to minutes); sessions are separated by
//           `minSessionGap` + Exp(mean `meanExtraSessionGap`) seconds (hours). The first event is
//           uniform in the first day after `startTime`. A user's times strictly increase.
//   Length. Each user has n events, uniform in [max(K + 1, ⌈E/2⌉), max(that, E + ⌊E/2⌋)] capped at
//           the item count (E = `eventsPerUser`, K = `holdoutEvents`).
//
// Every user's sequence is drawn from its own stream SplitMix64(mix(seed, user)): the data do not
// depend on the number of threads, and one user's sequence can be regenerated alone.
//
// FILES (all headerless CSV, "\n" line ends; user and item ids are decimal integers index + 1):
//   user_behavior.csv  user,item,behavior,time        every event except each user's last K,
//                                                     in global time order (ties by user id)
//   heldout.csv        user,item,behavior,time        each user's last K events, global time order
//   truth.csv          user,time,rank,item,probability for every held-out event (user,time), in
//                      heldout.csv order: the `truthTop` most probable next items under the planted
//                      model given the user's whole history before that event (training events and
//                      earlier held-out events), rank 1 first (ties: lower item id first); probability is the
//                      exact sampling probability (shortest round-trip decimal)
//   item.csv           item,category,shop,brand
//   user.csv           user,sex,age,pur_power
//   summary.json       BehaviorSummary: sizes, behaviour counts, time range, the configuration, and
//                      NDCG@10 / HR@10 on the held-out events (consumed items masked) of the oracle
//                      (items ranked by true probability), of the popularity baseline (items ranked
//                      by their count in user_behavior.csv) and of a random ranking: realised (mean
//                      over the held-out events) and, for the oracle and random, also expected under
//                      the true distribution.

import Dispatch
import Foundation
import StreamRecNumerics

public struct SyntheticBehavior: Sendable {
    /// Tianchi's behaviour types (pv, cart, fav, buy: the order of the planted logits).
    public typealias Behavior = Features.Behavior

    public struct Configuration: Sendable, Equatable, Codable {
        public var users: Int
        public var items: Int
        /// Mean events per user (held-out ones included); see the header for the spread.
        public var eventsPerUser: Int
        /// Each user's last K events go to heldout.csv.
        public var holdoutEvents: Int
        /// Items per held-out event in truth.csv.
        public var truthTop: Int
        /// Unix seconds; the first events fall in the following day.
        public var startTime: Int64
        public var dimension = 16
        /// Item categories; 0 = max(1, items / 40).
        public var categories = 0
        public var brandsPerCategory = 3
        public var shopsPerCategory = 4
        public var itemSpread = 1.0
        public var popularityExponent = 0.8
        public var tasteWeight = 5.0
        public var recentWeight = 10.0
        public var neighbours = 30
        public var recentItems = 3
        public var recentShareInSession = 0.7
        public var recentShareNewSession = 0.3
        public var meanSessionEvents = 8.0
        public var medianEventGap = 30.0
        public var maxEventGap: Int64 = 1_200
        public var minSessionGap: Int64 = 7_200
        public var meanExtraSessionGap = 36_000.0

        public init(users: Int = 10_000, items: Int = 5_000, eventsPerUser: Int = 100,
                    holdoutEvents: Int = 1, truthTop: Int = 100, startTime: Int64 = 1_511_539_200) {
            self.users = users
            self.items = items
            self.eventsPerUser = eventsPerUser
            self.holdoutEvents = holdoutEvents
            self.truthTop = truthTop
            self.startTime = startTime
        }

        public static let `default` = Configuration()

        public var categoryCount: Int { categories > 0 ? categories : max(1, items / 40) }

        /// The range of a user's event count (held-out events included).
        public var eventsRange: ClosedRange<Int> {
            let lo = max(holdoutEvents + 1, (eventsPerUser + 1) / 2)
            let hi = max(lo, eventsPerUser + eventsPerUser / 2)
            return lo...max(lo, min(hi, items))
        }

        /// Throws a readable message when the configuration cannot be generated.
        public func validate() throws(SyntheticBehaviorError) {
            func fail(_ m: String) -> SyntheticBehaviorError { SyntheticBehaviorError(message: m) }
            if users < 1 { throw fail("--users must be at least 1") }
            if items < 2 { throw fail("--items must be at least 2") }
            if users > Int(Int32.max) - 1 || items > Int(Int32.max) - 1 { throw fail("too many users or items") }
            if holdoutEvents < 0 { throw fail("--holdout-events must be non-negative") }
            if eventsPerUser < 1 { throw fail("--events-per-user must be at least 1") }
            if eventsRange.lowerBound > items {
                throw fail("every user needs at least \(eventsRange.lowerBound) distinct items (--holdout-events + 1, "
                           + "or half of --events-per-user) but there are only \(items) items")
            }
            if truthTop < 1 { throw fail("--truth-top must be at least 1") }
            if dimension < 1 || neighbours < 1 || recentItems < 1 || brandsPerCategory < 1 || shopsPerCategory < 1 {
                throw fail("dimension, neighbours, recent items, brands and shops per category must be positive")
            }
            for share in [recentShareInSession, recentShareNewSession] where !(share >= 0 && share <= 1) {
                throw fail("recent-item shares must be in [0, 1]")
            }
            if !(meanSessionEvents >= 1) || !(medianEventGap >= 1) || !(meanExtraSessionGap >= 0) {
                throw fail("session lengths and gaps must be positive")
            }
            if maxEventGap < 1 || minSessionGap <= maxEventGap {
                throw fail("sessions must be separated by more than the longest within-session gap")
            }
        }
    }

    /// One event. `user` and `item` are indices; their ids are `userID(_:)` / `itemID(_:)`.
    public struct Event: Sendable, Equatable, Hashable {
        public var user: Int32
        public var item: Int32
        public var behavior: Behavior
        public var time: Int64
        /// The event starts a session (first event, or more than `maxEventGap` after the previous).
        public var sessionStart: Bool

        public init(user: Int32, item: Int32, behavior: Behavior, time: Int64, sessionStart: Bool) {
            self.user = user
            self.item = item
            self.behavior = behavior
            self.time = time
            self.sessionStart = sessionStart
        }
    }

    /// One line of truth.csv without the event's key.
    public struct TruthEntry: Sendable, Equatable {
        public var item: Int32
        public var probability: Double
    }

    /// The generated data, in the order written.
    public struct Dataset: Sendable {
        /// user_behavior.csv: every event but each user's last K, in global time order.
        public var training: [Event]
        /// heldout.csv: each user's last K events, in global time order.
        public var heldOut: [Event]
        /// truth.csv: for heldOut[k], the `truthTop` most probable items, most probable first.
        public var truth: [[TruthEntry]]
        public var summary: BehaviorSummary
    }

    /// File names inside the output directory.
    public enum FileName {
        public static let behavior = "user_behavior.csv"
        public static let items = "item.csv"
        public static let users = "user.csv"
        public static let heldOut = "heldout.csv"
        public static let truth = "truth.csv"
        public static let summary = "summary.json"
    }

    /// The cutoff of the summary's metrics.
    public static let metricsCutoff = 10

    let model: Model
    public let seed: UInt64

    public init(seed: UInt64, configuration: Configuration = .default) {
        precondition((try? configuration.validate()) != nil, "invalid SyntheticBehavior configuration")
        self.seed = seed
        model = Model(seed: seed, config: configuration)
    }

    public var configuration: Configuration { model.config }

    public static func userID(_ user: Int) -> String { String(user + 1) }
    public static func itemID(_ item: Int) -> String { String(item + 1) }

    /// An item's category, shop and brand indices (ids are index + 1).
    public func attributes(ofItem i: Int) -> (category: Int, shop: Int, brand: Int) {
        (Int(model.itemCategory[i]), Int(model.itemShop[i]), Int(model.itemBrand[i]))
    }

    /// A user's sex (0/1), age bucket (1…8) and purchasing power (1…9).
    public func attributes(ofUser u: Int) -> (sex: Int, age: Int, purchasePower: Int) {
        (Int(model.userSex[u]), Int(model.userAge[u]), Int(model.userPower[u]))
    }

    /// The user's whole sequence (held-out events included), in time order.
    public func sequence(user: Int) -> [Event] {
        Workspace(model).generate(user: user, seed: seed, scoreLast: 0, truthTop: 0).events
    }

    /// The planted next-item distribution for `user` after `history` (distinct item indices, in
    /// time order), for an event that starts a session or continues one. Consumed items get 0.
    public func nextItemProbabilities(user: Int, history: [Int32], sessionStart: Bool) -> [Double] {
        let ws = Workspace(model)
        ws.load(user: user)
        for i in history { ws.consume(i) }
        ws.fillProbabilities(sessionStart: sessionStart)
        return Array(ws.probabilities)
    }

    /// One draw from `nextItemProbabilities` — the sampler the generator uses.
    public func sampleNextItem(user: Int, history: [Int32], sessionStart: Bool, using rng: inout SplitMix64) -> Int32 {
        let ws = Workspace(model)
        ws.load(user: user)
        for i in history { ws.consume(i) }
        return ws.sample(sessionStart: sessionStart, rng: &rng)
    }

    // MARK: - Generation

    /// Generates every file's content. `threads` only changes the speed, never the data.
    public func generate(threads: Int = ProcessInfo.processInfo.activeProcessorCount) -> Dataset {
        let cfg = model.config
        let n = cfg.users, m = cfg.items, K = cfg.holdoutEvents, cutoff = Self.metricsCutoff
        let seed = self.seed

        // 1. Every user's sequence, and for its held-out events the truth, the oracle and random
        //    figures (computed from the distribution the event is drawn from, as it is drawn).
        let top = cfg.truthTop
        let users: [UserOutput] = perUser(n, threads: threads) { u, ws in
            ws.generate(user: u, seed: seed, scoreLast: K, truthTop: top)
        }

        // 2. Popularity baseline: counts over the training events.
        var counts = [Int](repeating: 0, count: m)
        var behaviorCounts = [Int](repeating: 0, count: Behavior.allCases.count)
        var trainingCount = 0
        for s in users.lazy.map(\.events) {
            for e in s.dropLast(K) {
                counts[Int(e.item)] += 1
                behaviorCounts[Behavior.allCases.firstIndex(of: e.behavior)!] += 1
            }
            trainingCount += s.count - K
        }
        let popularOrder = (0..<m).sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }.map { Int32($0) }

        // 3. The popularity baseline's figures (realised only: its expectation would need every
        //    held-out event's whole distribution again).
        let popularity: [[BehaviorSummary.Figures]] = perUser(n, threads: threads) { u, ws in
            let s = users[u].events
            ws.reset()
            for e in s.dropLast(K) { ws.consume(e.item) }
            var out: [BehaviorSummary.Figures] = []
            for e in s.suffix(K) {
                let consumed = ws.consumed
                let shown = popularOrder.lazy.filter { !consumed[Int($0)] }.prefix(cutoff)
                let rank = RankingMetrics.rank(of: e.item, in: shown)
                out.append(.init(ndcg: RankingMetrics.ndcg(rank: rank, k: cutoff),
                                 hitRate: RankingMetrics.hitRate(rank: rank, k: cutoff)))
                ws.consume(e.item)
            }
            return out
        }

        // 4. Global time order (ties by user; a user's times strictly increase).
        var training: [Event] = [], heldOut: [Event] = []
        var truthByUser: [[TruthEntry]] = []
        training.reserveCapacity(trainingCount)
        heldOut.reserveCapacity(n * K)
        truthByUser.reserveCapacity(n * K)
        var total = HeldOutScore()
        for (u, user) in users.enumerated() {
            training.append(contentsOf: user.events.dropLast(K))
            heldOut.append(contentsOf: user.events.suffix(K))
            truthByUser.append(contentsOf: user.truth)
            for score in user.scores { total.add(score) }
            for figures in popularity[u] { total.popularity.add(figures) }
        }
        let before: (Event, Event) -> Bool = { $0.time != $1.time ? $0.time < $1.time : $0.user < $1.user }
        training.sort(by: before)
        let order = heldOut.indices.sorted { before(heldOut[$0], heldOut[$1]) }
        heldOut = order.map { heldOut[$0] }
        let truth = order.map { truthByUser[$0] }

        let denominator = Double(max(heldOut.count, 1))
        let times = training.map(\.time) + heldOut.map(\.time)
        let summary = BehaviorSummary(
            seed: seed, users: n, items: m, categories: cfg.categoryCount,
            trainingEvents: training.count, heldOutEvents: heldOut.count,
            behaviorCounts: Dictionary(uniqueKeysWithValues: zip(Behavior.allCases.map(\.name), behaviorCounts)),
            firstTime: times.min() ?? cfg.startTime, lastTime: times.max() ?? cfg.startTime,
            k: cutoff, truthTop: top,
            oracle: total.oracle.scaled(1 / denominator),
            popularity: total.popularity.scaled(1 / denominator),
            random: total.random.scaled(1 / denominator),
            configuration: cfg)
        return Dataset(training: training, heldOut: heldOut, truth: truth, summary: summary)
    }

    /// Writes the dataset's files into `directory` (created if needed), each under a temporary
    /// name renamed when complete.
    public func write(_ data: Dataset, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        let behaviorNames = Behavior.allCases.map { Array($0.name.utf8) }
        let comma = UInt8(ascii: ","), newline: UInt8 = 0x0A

        func writeEvents(_ events: [Event], to name: String) throws {
            let w = try BufferedFileWriter(path: path(name), atomic: true)
            for e in events {
                appendDecimal(&w.buffer, Int64(e.user) + 1); w.buffer.append(comma)
                appendDecimal(&w.buffer, Int64(e.item) + 1); w.buffer.append(comma)
                w.buffer.append(contentsOf: behaviorNames[Behavior.allCases.firstIndex(of: e.behavior)!]); w.buffer.append(comma)
                appendDecimal(&w.buffer, e.time); w.buffer.append(newline)
                try w.maybeFlush()
            }
            try w.close()
        }
        try writeEvents(data.training, to: FileName.behavior)
        try writeEvents(data.heldOut, to: FileName.heldOut)

        let t = try BufferedFileWriter(path: path(FileName.truth), atomic: true)
        for (e, entries) in zip(data.heldOut, data.truth) {
            for (r, entry) in entries.enumerated() {
                appendDecimal(&t.buffer, Int64(e.user) + 1); t.buffer.append(comma)
                appendDecimal(&t.buffer, e.time); t.buffer.append(comma)
                appendDecimal(&t.buffer, Int64(r + 1)); t.buffer.append(comma)
                appendDecimal(&t.buffer, Int64(entry.item) + 1); t.buffer.append(comma)
                t.buffer.append(contentsOf: entry.probability.description.utf8); t.buffer.append(newline)
                try t.maybeFlush()
            }
        }
        try t.close()

        let items = try BufferedFileWriter(path: path(FileName.items), atomic: true)
        for i in 0..<model.config.items {
            appendDecimal(&items.buffer, Int64(i) + 1); items.buffer.append(comma)
            appendDecimal(&items.buffer, Int64(model.itemCategory[i]) + 1); items.buffer.append(comma)
            appendDecimal(&items.buffer, Int64(model.itemShop[i]) + 1); items.buffer.append(comma)
            appendDecimal(&items.buffer, Int64(model.itemBrand[i]) + 1); items.buffer.append(newline)
            try items.maybeFlush()
        }
        try items.close()

        let users = try BufferedFileWriter(path: path(FileName.users), atomic: true)
        for u in 0..<model.config.users {
            appendDecimal(&users.buffer, Int64(u) + 1); users.buffer.append(comma)
            appendDecimal(&users.buffer, Int64(model.userSex[u])); users.buffer.append(comma)
            appendDecimal(&users.buffer, Int64(model.userAge[u])); users.buffer.append(comma)
            appendDecimal(&users.buffer, Int64(model.userPower[u])); users.buffer.append(newline)
            try users.maybeFlush()
        }
        try users.close()

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let summary = try BufferedFileWriter(path: path(FileName.summary), atomic: true)
        try summary.write(try encoder.encode(data.summary))
        try summary.write([newline])
        try summary.close()
    }

    /// Runs `body(user, workspace)` for every user on up to `threads` threads (one workspace per
    /// chunk of users); results in user order.
    func perUser<T: Sendable>(_ n: Int, threads: Int, _ body: @Sendable (Int, Workspace) -> T) -> [T] {
        let chunks = min(n, max(1, threads) * 8)
        let model = self.model
        return [T](unsafeUninitializedCapacity: n) { buffer, count in
            // Every chunk initialises its own disjoint range of the buffer.
            let base = UncheckedSendable(buffer.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let ws = Workspace(model)
                for u in (c * n / chunks)..<((c + 1) * n / chunks) {
                    (base.value + u).initialize(to: body(u, ws))
                }
            }
            count = n
        }
    }
}

/// A value handed to other threads under the caller's own synchronisation.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// A configuration the generator cannot use.
public struct SyntheticBehaviorError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

// MARK: - Summary

/// summary.json: what was generated and the reference figures on the held-out events.
public struct BehaviorSummary: Codable, Sendable, Equatable {
    /// Mean NDCG@k / HR@k over the held-out events: realised (against the actual item) and
    /// expected (under the planted next-item distribution).
    /// The expectations are nil for the popularity baseline.
    public struct Figures: Codable, Sendable, Equatable {
        public var ndcg = 0.0
        public var hitRate = 0.0
        public var expectedNDCG: Double? = nil
        public var expectedHitRate: Double? = nil

        enum CodingKeys: String, CodingKey {
            case ndcg, hitRate = "hr", expectedNDCG = "expected_ndcg", expectedHitRate = "expected_hr"
        }

        mutating func add(_ o: Figures) {
            ndcg += o.ndcg; hitRate += o.hitRate
            if let e = o.expectedNDCG { expectedNDCG = (expectedNDCG ?? 0) + e }
            if let e = o.expectedHitRate { expectedHitRate = (expectedHitRate ?? 0) + e }
        }

        func scaled(_ f: Double) -> Figures {
            Figures(ndcg: ndcg * f, hitRate: hitRate * f, expectedNDCG: expectedNDCG.map { $0 * f },
                    expectedHitRate: expectedHitRate.map { $0 * f })
        }
    }

    public var format = "streamrec-behavior-1"
    public var seed: UInt64
    public var users: Int
    public var items: Int
    public var categories: Int
    public var trainingEvents: Int
    public var heldOutEvents: Int
    /// Behaviour counts in user_behavior.csv.
    public var behaviorCounts: [String: Int]
    public var firstTime: Int64
    public var lastTime: Int64
    /// Cutoff of the figures (NDCG@k, HR@k).
    public var k: Int
    public var truthTop: Int
    /// Items ranked by their true probability (knows each user's latent taste: an upper reference).
    public var oracle: Figures
    /// Items ranked by their count in user_behavior.csv.
    public var popularity: Figures
    /// A uniformly random ranking.
    public var random: Figures
    public var configuration: SyntheticBehavior.Configuration

    enum CodingKeys: String, CodingKey {
        case format, seed, users, items, categories, k, oracle, popularity, random, configuration
        case trainingEvents = "training_events", heldOutEvents = "heldout_events"
        case behaviorCounts = "behavior_counts", firstTime = "first_time", lastTime = "last_time"
        case truthTop = "truth_top"
    }
}

struct HeldOutScore: Sendable {
    var oracle = BehaviorSummary.Figures()
    var popularity = BehaviorSummary.Figures()
    var random = BehaviorSummary.Figures()

    mutating func add(_ o: HeldOutScore) {
        oracle.add(o.oracle); popularity.add(o.popularity); random.add(o.random)
    }
}

/// One user's events (held-out ones last) with the truth and figures of the held-out ones.
struct UserOutput: Sendable {
    var events: [SyntheticBehavior.Event]
    var truth: [[SyntheticBehavior.TruthEntry]]
    var scores: [HeldOutScore]
}

// MARK: - Planted parameters

extension SyntheticBehavior {
    final class Model: Sendable {
        let config: Configuration
        let d: Int
        let itemVector: [Double]            // items × d
        let itemVectorT: [Double]           // d × items (the same numbers, for the per-user pass)
        let logPop: [Double]
        let itemCategory: [Int32], itemShop: [Int32], itemBrand: [Int32]
        let userVector: [Double]            // users × d
        let userSex: [UInt8], userAge: [UInt8], userPower: [UInt8]
        // Neighbour lists: item j's list is neighbourItem[neighbourStart[j] ..< neighbourStart[j+1]],
        // with unnormalised weights n_j(i) (scaled so that the largest is 1).
        let neighbourStart: [Int]
        let neighbourItem: [Int32]
        let neighbourWeight: [Double]

        init(seed: UInt64, config: Configuration) {
            self.config = config
            let d = config.dimension, m = config.items, n = config.users, c = config.categoryCount
            self.d = d
            var rng = SplitMix64(seed: seed ^ 0xBE4A_71C0_5EED_0001)
            let scale = 1 / Double(d).squareRoot()

            func normalized(_ v: [Double]) -> [Double] {
                let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
                return norm > 0 ? v.map { $0 / norm } : [1] + [Double](repeating: 0, count: d - 1)
            }
            let centres = (0..<c).map { _ in normalized((0..<d).map { _ in rng.normal() }) }

            var itemVector = [Double](repeating: 0, count: m * d)
            var itemCategory = [Int32](repeating: 0, count: m)
            for i in 0..<m {
                let cat = Int(rng.next() % UInt64(c))
                itemCategory[i] = Int32(cat)
                let v = normalized((0..<d).map { centres[cat][$0] + config.itemSpread * scale * rng.normal() })
                for k in 0..<d { itemVector[i * d + k] = v[k] }
            }
            // Popularity ranks: a random permutation (Fisher–Yates).
            var perm = Array(0..<m)
            for i in stride(from: m - 1, to: 0, by: -1) { perm.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            logPop = perm.map { -config.popularityExponent * log(Double($0 + 1)) }
            // Shops and brands: a few per category.
            let shopCount = max(1, m / 20)
            let categoryShops = (0..<c).map { _ in (0..<config.shopsPerCategory).map { _ in Int32(rng.next() % UInt64(shopCount)) } }
            itemShop = itemCategory.map { categoryShops[Int($0)][Int(rng.next() % UInt64(config.shopsPerCategory))] }
            itemBrand = itemCategory.map {
                $0 * Int32(config.brandsPerCategory) + Int32(rng.next() % UInt64(config.brandsPerCategory))
            }
            self.itemVector = itemVector
            var transposed = [Double](repeating: 0, count: m * d)
            for i in 0..<m { for k in 0..<d { transposed[k * m + i] = itemVector[i * d + k] } }
            itemVectorT = transposed
            self.itemCategory = itemCategory

            // Users.
            let sexShift = (0..<2).map { _ in (0..<d).map { _ in scale * rng.normal() } }
            let ageShift = (0..<8).map { _ in (0..<d).map { _ in scale * rng.normal() } }
            var userVector = [Double](repeating: 0, count: n * d)
            var sex = [UInt8](repeating: 0, count: n), age = sex, power = sex
            for u in 0..<n {
                sex[u] = UInt8(rng.next() % 2)
                age[u] = UInt8(1 + rng.next() % 8)
                power[u] = UInt8(1 + rng.next() % 9)
                let v = normalized((0..<d).map {
                    scale * rng.normal() + 0.5 * sexShift[Int(sex[u])][$0] + 0.5 * ageShift[Int(age[u]) - 1][$0]
                })
                for k in 0..<d { userVector[u * d + k] = v[k] }
            }
            self.userVector = userVector
            userSex = sex; userAge = age; userPower = power

            // Neighbour lists within each category.
            var members = [[Int32]](repeating: [], count: c)
            for i in 0..<m { members[Int(itemCategory[i])].append(Int32(i)) }
            var start = [Int](repeating: 0, count: m + 1)
            var nItem: [Int32] = [], nWeight: [Double] = []
            nItem.reserveCapacity(m * min(config.neighbours, 64))
            nWeight.reserveCapacity(m * min(config.neighbours, 64))
            var scored: [(Int32, Double)] = []
            for j in 0..<m {
                start[j] = nItem.count
                scored.removeAll(keepingCapacity: true)
                for i32 in members[Int(itemCategory[j])] where Int(i32) != j {
                    let i = Int(i32)
                    var dot = 0.0
                    for k in 0..<d { dot += itemVector[j * d + k] * itemVector[i * d + k] }
                    scored.append((i32, 0.5 * logPop[i] + config.recentWeight * dot))
                }
                scored.sort { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
                let kept = scored.prefix(config.neighbours)
                let top = kept.first?.1 ?? 0
                for (i, s) in kept { nItem.append(i); nWeight.append(exp(s - top)) }
            }
            start[m] = nItem.count
            neighbourStart = start
            neighbourItem = nItem
            neighbourWeight = nWeight
        }

        @inline(__always)
        func affinity(user u: Int, item i: Int) -> Double {
            var dot = 0.0
            for k in 0..<d { dot += userVector[u * d + k] * itemVector[i * d + k] }
            return dot
        }
    }

    // MARK: - Sampling workspace (one per thread)

    /// Buffers are raw (no copy-on-write or exclusivity checks in the hot loops); one per thread.
    final class Workspace {
        let model: Model
        let m: Int
        /// w_u(i) for the loaded user, scaled so that the largest is 1; and its running sums.
        let weights: UnsafeMutableBufferPointer<Double>
        let cumulative: UnsafeMutableBufferPointer<Double>
        let consumed: UnsafeMutableBufferPointer<Bool>
        /// The last `fillProbabilities` result.
        let probabilities: UnsafeMutableBufferPointer<Double>
        /// The consumed items in history order.
        var history: [Int32] = []
        var user = -1
        // The recent-items context of the next event: items j ∈ R and Σ_{k∈N(j), k∉h} n_j(k).
        var recent: [Int32] = []
        var recentMass: [Double] = []

        init(_ model: Model) {
            self.model = model
            m = model.config.items
            weights = .allocate(capacity: m)
            cumulative = .allocate(capacity: m)
            probabilities = .allocate(capacity: m)
            consumed = .allocate(capacity: m)
            weights.initialize(repeating: 0)
            cumulative.initialize(repeating: 0)
            probabilities.initialize(repeating: 0)
            consumed.initialize(repeating: false)
        }

        deinit {
            weights.deallocate()
            cumulative.deallocate()
            probabilities.deallocate()
            consumed.deallocate()
        }

        /// Computes w_u for `user` and forgets the previous history.
        func load(user u: Int) {
            precondition(u >= 0 && u < model.config.users, "no user \(u)")
            reset()
            user = u
            let d = model.d, a = model.config.tasteWeight, m = self.m, w = weights
            // log w_u(i) = log pop_i + a·u·v_i, accumulated one latent dimension at a time
            // (contiguous rows of the transposed item matrix: the loop vectorises).
            model.logPop.withUnsafeBufferPointer { lp in
                for i in 0..<m { w[i] = lp[i] }
            }
            model.itemVectorT.withUnsafeBufferPointer { vt in
                for k in 0..<d {
                    let c = a * model.userVector[u * d + k]
                    let row = vt.baseAddress! + k * m
                    for i in 0..<m { w[i] += c * row[i] }
                }
            }
            var top = -Double.infinity
            for i in 0..<m where w[i] > top { top = w[i] }
            var acc = 0.0
            for i in 0..<m {
                w[i] = exp(w[i] - top)
                acc += w[i]
                cumulative[i] = acc
            }
        }

        /// Forgets the history (the loaded weights stay).
        func reset() {
            for i in history { consumed[Int(i)] = false }
            history.removeAll(keepingCapacity: true)
        }

        @inline(__always)
        func consume(_ item: Int32) {
            precondition(!consumed[Int(item)], "item consumed twice")
            consumed[Int(item)] = true
            history.append(item)
        }

        /// Fills `recent`/`recentMass` and returns λ for the next event.
        func prepareContext(sessionStart: Bool) -> Double {
            recent.removeAll(keepingCapacity: true)
            recentMass.removeAll(keepingCapacity: true)
            let start = model.neighbourStart, item = model.neighbourItem, weight = model.neighbourWeight
            let consumed = self.consumed
            for j in history.suffix(model.config.recentItems).reversed() {
                var mass = 0.0
                for t in start[Int(j)]..<start[Int(j) + 1] where !consumed[Int(item[t])] { mass += weight[t] }
                if mass > 0 { recent.append(j); recentMass.append(mass) }
            }
            if recent.isEmpty { return 0 }
            return sessionStart ? model.config.recentShareNewSession : model.config.recentShareInSession
        }

        /// Σ_{k∉h} w_u(k), summed afresh.
        func unconsumedTasteMass() -> Double {
            var z = 0.0
            for i in 0..<m where !consumed[i] { z += weights[i] }
            return z
        }

        /// Draws the next item from the planted distribution (does not consume it).
        func sample(sessionStart: Bool, rng: inout SplitMix64) -> Int32 {
            let consumed = self.consumed
            // λ = the nominal share when R is non-empty, else 0: the context is only needed when
            // the draw falls below the nominal share.
            let nominal = history.isEmpty ? 0
                : sessionStart ? model.config.recentShareNewSession : model.config.recentShareInSession
            if rng.nextDouble() < nominal && prepareContext(sessionStart: sessionStart) > 0 {
                let r = min(Int(rng.nextDouble() * Double(recent.count)), recent.count - 1)
                let j = Int(recent[r])
                let x = rng.nextDouble() * recentMass[r]
                let item = model.neighbourItem, weight = model.neighbourWeight
                var acc = 0.0
                var last: Int32 = -1
                for t in model.neighbourStart[j]..<model.neighbourStart[j + 1] {
                    let i = item[t]
                    if consumed[Int(i)] { continue }
                    acc += weight[t]
                    last = i
                    if acc > x { return i }
                }
                return last  // rounding at the end of the list
            }
            // Taste × popularity restricted to unconsumed items: rejection from the full
            // distribution (exact), then an exact scan if the user has consumed most of the mass.
            let cumulative = self.cumulative
            let total = cumulative[m - 1]
            for _ in 0..<64 {
                let x = rng.nextDouble() * total
                var lo = 0, hi = m - 1
                while lo < hi {
                    let mid = (lo + hi) >> 1
                    if cumulative[mid] > x { hi = mid } else { lo = mid + 1 }
                }
                if !consumed[lo] { return Int32(lo) }
            }
            let x = rng.nextDouble() * unconsumedTasteMass()
            var acc = 0.0
            var last = -1
            for i in 0..<m where !consumed[i] {
                acc += weights[i]
                last = i
                if acc > x { break }
            }
            return Int32(last)
        }

        /// `probabilities` = the planted distribution of the next item.
        func fillProbabilities(sessionStart: Bool) {
            let lambda = prepareContext(sessionStart: sessionStart)
            let scale = (1 - lambda) / unconsumedTasteMass()
            let p = probabilities, consumed = self.consumed, w = weights
            for i in 0..<m { p[i] = consumed[i] ? 0 : scale * w[i] }
            if recent.isEmpty { return }
            let share = lambda / Double(recent.count)
            let start = model.neighbourStart, item = model.neighbourItem, weight = model.neighbourWeight
            for (j, mass) in zip(recent, recentMass) {
                for t in start[Int(j)]..<start[Int(j) + 1] {
                    let i = Int(item[t])
                    if !consumed[i] { p[i] += share * weight[t] / mass }
                }
            }
        }

        /// The `count` most probable unconsumed items of `probabilities` (probability desc, index asc).
        func mostProbable(_ count: Int) -> [SyntheticBehavior.TruthEntry] {
            // Min-heap on "worse": the root is the worst item kept so far.
            var heap: [SyntheticBehavior.TruthEntry] = []
            heap.reserveCapacity(count)
            @inline(__always) func worse(_ a: SyntheticBehavior.TruthEntry, _ b: SyntheticBehavior.TruthEntry) -> Bool {
                a.probability != b.probability ? a.probability < b.probability : a.item > b.item
            }
            func siftDown(_ start: Int) {
                var k = start
                while true {
                    let l = 2 * k + 1, r = l + 1
                    var w = k
                    if l < heap.count && worse(heap[l], heap[w]) { w = l }
                    if r < heap.count && worse(heap[r], heap[w]) { w = r }
                    if w == k { return }
                    heap.swapAt(k, w)
                    k = w
                }
            }
            let p = probabilities, consumed = self.consumed
            for i in 0..<m where !consumed[i] {
                if heap.count == count && p[i] < heap[0].probability { continue }
                let e = SyntheticBehavior.TruthEntry(item: Int32(i), probability: p[i])
                if heap.count < count {
                    heap.append(e)
                    var k = heap.count - 1
                    while k > 0 {
                        let parent = (k - 1) / 2
                        if !worse(heap[k], heap[parent]) { break }
                        heap.swapAt(k, parent)
                        k = parent
                    }
                } else if worse(heap[0], e) {
                    heap[0] = e
                    siftDown(0)
                }
            }
            return heap.sorted { worse($1, $0) }
        }

        /// The user's whole sequence from its own random stream; for its last `scoreLast` events
        /// also the `truthTop` most probable items and the oracle and random figures. Scoring
        /// draws nothing from the stream: the events do not depend on it.
        func generate(user u: Int, seed: UInt64, scoreLast: Int, truthTop: Int) -> UserOutput {
            let cfg = model.config
            var rng = SplitMix64(seed: SplitMix64.mix(seed, UInt64(u)))
            load(user: u)
            let range = cfg.eventsRange
            let n = range.lowerBound + Int(rng.next() % UInt64(range.count))
            var output = UserOutput(events: [], truth: [], scores: [])
            output.events.reserveCapacity(n)
            var time = cfg.startTime + Int64(rng.nextDouble() * 86_400)
            let stop = 1 / cfg.meanSessionEvents   // P(session ends after an event)
            let power = Double(model.userPower[u]) - 5
            for k in 0..<n {
                var sessionStart = k == 0
                if k > 0 {
                    if rng.nextDouble() < stop {
                        sessionStart = true
                        time += cfg.minSessionGap + Int64(-log(1 - rng.nextDouble()) * cfg.meanExtraSessionGap)
                    } else {
                        let gap = exp(log(cfg.medianEventGap) + rng.normal()).rounded()
                        time += Int64(min(max(gap, 1), Double(cfg.maxEventGap)))
                    }
                }
                let scored = k >= n - scoreLast
                if scored { fillProbabilities(sessionStart: sessionStart) }
                let item = sample(sessionStart: sessionStart, rng: &rng)
                if scored { score(item: item, position: k, user: u, seed: seed, truthTop: truthTop, into: &output) }
                consume(item)
                let alpha = model.affinity(user: u, item: Int(item))
                let logits = (0, -2.8 + 1.5 * alpha, -3.2 + 1.5 * alpha, -3.6 + 2.5 * alpha + 0.15 * power)
                let w = (1.0, exp(logits.1), exp(logits.2), exp(logits.3))
                var x = rng.nextDouble() * (w.0 + w.1 + w.2 + w.3)
                var b = 3
                if x < w.0 { b = 0 } else {
                    x -= w.0
                    if x < w.1 { b = 1 } else if x - w.1 < w.2 { b = 2 }
                }
                output.events.append(Event(user: Int32(u), item: item, behavior: Behavior.allCases[b], time: time,
                                           sessionStart: sessionStart))
            }
            return output
        }

        /// Truth and oracle/random figures of a held-out event at `position` whose item was drawn
        /// from `probabilities` (filled before the draw).
        func score(item: Int32, position k: Int, user u: Int, seed: UInt64, truthTop: Int, into output: inout UserOutput) {
            let cutoff = SyntheticBehavior.metricsCutoff
            let p = probabilities, consumed = self.consumed
            let best = mostProbable(max(truthTop, cutoff))
            output.truth.append(Array(best.prefix(truthTop)))
            var score = HeldOutScore()
            // Oracle: rank of the actual item in (probability desc, index asc), consumed masked.
            let a = Int(item), pa = p[a]
            var rank = 1
            for i in 0..<m where !consumed[i] && (p[i] > pa || (p[i] == pa && i < a)) { rank += 1 }
            let expected = RankingMetrics.expected(probabilitiesInRankOrder: best.lazy.map(\.probability), k: cutoff)
            score.oracle = .init(ndcg: RankingMetrics.ndcg(rank: rank, k: cutoff),
                                 hitRate: RankingMetrics.hitRate(rank: rank, k: cutoff),
                                 expectedNDCG: expected.ndcg, expectedHitRate: expected.hitRate)
            // Random: the actual item at a uniformly random position among the candidates.
            let candidates = m - k
            var rng = SplitMix64(seed: SplitMix64.mix(seed ^ 0x7A4D_0B5E_11E0_0DD5, UInt64(u) &* 1_000_003 &+ UInt64(k)))
            let randomRank = 1 + Int(rng.next() % UInt64(candidates))
            let random = RankingMetrics.random(candidates: candidates, k: cutoff)
            score.random = .init(ndcg: RankingMetrics.ndcg(rank: randomRank, k: cutoff),
                                 hitRate: RankingMetrics.hitRate(rank: randomRank, k: cutoff),
                                 expectedNDCG: random.ndcg, expectedHitRate: random.hitRate)
            output.scores.append(score)
        }
    }
}
