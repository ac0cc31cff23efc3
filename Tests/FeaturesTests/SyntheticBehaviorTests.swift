import Foundation
import Testing
import StreamRecNumerics
@testable import Features

/// Small shapes: quick in debug builds too.
func behaviorConfig(users: Int = 300, items: Int = 400, events: Int = 30, holdout: Int = 1,
                    truthTop: Int = 50) -> SyntheticBehavior.Configuration {
    SyntheticBehavior.Configuration(users: users, items: items, eventsPerUser: events, holdoutEvents: holdout,
                                    truthTop: truthTop)
}

/// One generated data set shared by the read-only tests (globals initialise once, thread-safely).
let sharedBehavior: (generator: SyntheticBehavior, data: SyntheticBehavior.Dataset) = {
    let g = SyntheticBehavior(seed: 17, configuration: behaviorConfig(holdout: 2))
    return (g, g.generate())
}()

/// A headerless CSV as rows of fields.
func csvRows(_ url: URL) throws -> [[Substring]] {
    let text = try String(contentsOf: url, encoding: .utf8)
    #expect(text.hasSuffix("\n"))
    return text.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
}

@Suite struct SyntheticBehaviorTests {
    @Test func deterministicForASeedWhateverTheThreads() {
        let cfg = behaviorConfig(users: 120, items: 300, events: 20)
        let a = SyntheticBehavior(seed: 3, configuration: cfg).generate(threads: 1)
        let b = SyntheticBehavior(seed: 3, configuration: cfg).generate(threads: 3)
        let c = SyntheticBehavior(seed: 4, configuration: cfg).generate(threads: 2)
        #expect(a.training == b.training && a.heldOut == b.heldOut && a.truth == b.truth && a.summary == b.summary)
        #expect(a.training != c.training)
        // One user's sequence regenerates alone.
        let g = SyntheticBehavior(seed: 3, configuration: cfg)
        let seq = g.sequence(user: 7)
        #expect(seq == (a.training + a.heldOut).filter { $0.user == 7 }.sorted { $0.time < $1.time })
    }

    @Test func filesParseAndAreInGlobalTimeOrder() throws {
        let (g, data) = sharedBehavior
        let dir = tempPath("behavior")
        defer { try? FileManager.default.removeItem(at: dir) }
        try g.write(data, to: dir.path)
        let behaviors: Set<Substring> = ["pv", "cart", "fav", "buy"]
        for (name, events) in [(SyntheticBehavior.FileName.behavior, data.training), (SyntheticBehavior.FileName.heldOut, data.heldOut)] {
            let rows = try csvRows(dir.appendingPathComponent(name))
            #expect(rows.count == events.count)
            var previous: (time: Int64, user: Int) = (.min, 0)
            for (row, e) in zip(rows, events) {
                #expect(row.count == 4)
                #expect(!row[0].isEmpty && !row[1].isEmpty)
                #expect(behaviors.contains(row[2]))
                guard let time = Int64(row[3]), let user = Int(row[0]), let item = Int(row[1]) else {
                    Issue.record("non-integer field in \(row)"); continue
                }
                #expect(row[0] == SyntheticBehavior.userID(Int(e.user)) && row[1] == SyntheticBehavior.itemID(Int(e.item)))
                #expect(row[2] == e.behavior.name && time == e.time && item >= 1)
                #expect(previous.time < time || (previous.time == time && previous.user < user), "not in time order")
                previous = (time, user)
            }
        }
        let items = try csvRows(dir.appendingPathComponent(SyntheticBehavior.FileName.items))
        #expect(items.count == g.configuration.items)
        #expect(items.allSatisfy { $0.count == 4 && $0.allSatisfy { Int($0) != nil } })
        #expect(Set(items.map { $0[0] }).count == items.count)
        let users = try csvRows(dir.appendingPathComponent(SyntheticBehavior.FileName.users))
        #expect(users.count == g.configuration.users)
        #expect(users.allSatisfy { $0.count == 4 && $0.allSatisfy { Int($0) != nil } })
        #expect(Set(users.map { $0[1] }) == ["0", "1"])
        let truth = try csvRows(dir.appendingPathComponent(SyntheticBehavior.FileName.truth))
        #expect(truth.count == data.truth.reduce(0) { $0 + $1.count })
        #expect(truth.allSatisfy { $0.count == 5 && Double($0[4]) != nil })
        // The written probabilities are the exact doubles (shortest round-trip decimal).
        let flat = data.truth.flatMap { $0 }
        for (row, entry) in zip(truth, flat) { #expect(Double(row[4]) == entry.probability) }
        let summary = try JSONDecoder().decode(BehaviorSummary.self,
                                               from: Data(contentsOf: dir.appendingPathComponent(SyntheticBehavior.FileName.summary)))
        #expect(summary.trainingEvents == data.training.count && summary.heldOutEvents == data.heldOut.count)
        #expect(summary.configuration == g.configuration && summary.seed == 17)
        #expect(abs(summary.oracle.ndcg - data.summary.oracle.ndcg) < 1e-12)
        // Writing again gives the same bytes.
        let again = tempPath("behavior-again")
        defer { try? FileManager.default.removeItem(at: again) }
        try SyntheticBehavior(seed: 17, configuration: g.configuration).write(data, to: again.path)
        for name in [SyntheticBehavior.FileName.behavior, SyntheticBehavior.FileName.heldOut, SyntheticBehavior.FileName.truth,
                     SyntheticBehavior.FileName.items, SyntheticBehavior.FileName.users, SyntheticBehavior.FileName.summary] {
            #expect(try Data(contentsOf: dir.appendingPathComponent(name)) == Data(contentsOf: again.appendingPathComponent(name)))
        }
    }

    /// Within-session gaps are seconds to minutes, sessions are hours apart.
    @Test func sessions() {
        let (g, data) = sharedBehavior
        let cfg = g.configuration
        var last = [Int64?](repeating: nil, count: cfg.users)
        var within: [Int64] = [], between = 0, starts = 0
        for e in (data.training + data.heldOut).sorted(by: { $0.time < $1.time }) {
            if let t = last[Int(e.user)] {
                let gap = e.time - t
                #expect(gap >= 1)
                if e.sessionStart {
                    #expect(gap >= cfg.minSessionGap)
                    between += 1
                } else {
                    #expect(gap <= cfg.maxEventGap)
                    within.append(gap)
                }
            } else {
                #expect(e.sessionStart)
            }
            if e.sessionStart { starts += 1 }
            last[Int(e.user)] = e.time
        }
        within.sort()
        let median = within[within.count / 2]
        #expect(median >= 10 && median <= 120, "median within-session gap \(median) s")
        let share = Double(between) / Double(between + within.count)
        #expect(share > 0.08 && share < 0.18, "session starts among continuing events: \(share)")
        #expect(starts == between + cfg.users)
    }

    @Test func heldOutEventsAreEachUsersLastAndAbsentFromTraining() {
        let (g, data) = sharedBehavior
        let K = g.configuration.holdoutEvents
        #expect(data.heldOut.count == K * g.configuration.users)
        var lastTraining = [Int64](repeating: .min, count: g.configuration.users)
        var trainingPairs = Set<[Int32]>()
        for e in data.training {
            lastTraining[Int(e.user)] = max(lastTraining[Int(e.user)], e.time)
            #expect(trainingPairs.insert([e.user, e.item]).inserted, "a user consumed an item twice")
        }
        var perUser = [Int](repeating: 0, count: g.configuration.users)
        for e in data.heldOut {
            perUser[Int(e.user)] += 1
            #expect(e.time > lastTraining[Int(e.user)])
            #expect(!trainingPairs.contains([e.user, e.item]))
        }
        #expect(perUser.allSatisfy { $0 == K })
        for u in [0, 5, 99] {
            let seq = g.sequence(user: u)
            #expect(Array(seq.suffix(K)) == data.heldOut.filter { $0.user == Int32(u) })
        }
    }

    /// truth.csv holds the top of the planted distribution given the whole history before the event.
    @Test func truthIsThePlantedDistribution() {
        let (g, data) = sharedBehavior
        for (k, e) in data.heldOut.prefix(40).enumerated() {
            let seq = g.sequence(user: Int(e.user))
            let position = seq.firstIndex(of: e)!
            let history = seq[..<position].map(\.item)
            let p = g.nextItemProbabilities(user: Int(e.user), history: history, sessionStart: e.sessionStart)
            #expect(abs(p.reduce(0, +) - 1) < 1e-9)
            for i in history { #expect(p[Int(i)] == 0) }
            let expected = p.indices.filter { p[$0] > 0 }
                .sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }
                .prefix(g.configuration.truthTop)
            let entries = data.truth[k]
            #expect(entries.map { Int($0.item) } == Array(expected))
            #expect(entries.allSatisfy { $0.probability == p[Int($0.item)] })
        }
    }

    /// The sampler draws from exactly the written distribution: Pearson's chi-square over the
    /// items (expected counts < 5 pooled) stays below df + 6·sqrt(2·df) (≈ 6 standard deviations
    /// of the chi-square statistic; a wrong sampler exceeds it by far at 40,000 draws).
    @Test(arguments: [false, true])
    func samplerMatchesTheDistribution(sessionStart: Bool) {
        let g = SyntheticBehavior(seed: 8, configuration: behaviorConfig(users: 10, items: 200, events: 20))
        let seq = g.sequence(user: 4)
        let ws = SyntheticBehavior.Workspace(g.model)
        ws.load(user: 4)
        for e in seq.prefix(8) { ws.consume(e.item) }
        ws.fillProbabilities(sessionStart: sessionStart)
        let p = Array(ws.probabilities)
        let draws = 40_000
        var counts = [Int](repeating: 0, count: p.count)
        var rng = SplitMix64(seed: 99)
        for _ in 0..<draws { counts[Int(ws.sample(sessionStart: sessionStart, rng: &rng))] += 1 }
        for e in seq.prefix(8) { #expect(counts[Int(e.item)] == 0) }
        var chi2 = 0.0, bins = 0, pooledExpected = 0.0, pooledObserved = 0.0
        for i in p.indices where p[i] > 0 {
            let expected = p[i] * Double(draws)
            if expected < 5 { pooledExpected += expected; pooledObserved += Double(counts[i]); continue }
            chi2 += (Double(counts[i]) - expected) * (Double(counts[i]) - expected) / expected
            bins += 1
        }
        if pooledExpected > 0 {
            chi2 += (pooledObserved - pooledExpected) * (pooledObserved - pooledExpected) / pooledExpected
            bins += 1
        }
        let df = Double(bins - 1)
        #expect(bins > 20)
        #expect(chi2 < df + 6 * (2 * df).squareRoot(), "chi-square \(chi2) with \(Int(df)) degrees of freedom")
    }

    /// The planted dependence on the recent items is real and the data follow it: the rate at
    /// which the next item shares a category with one of the last 3 items matches the planted
    /// prediction (within 4 standard deviations), is much higher within a session than at a
    /// session start, and much higher than the taste × popularity part alone predicts.
    @Test func recentItemsDriveTheNextItem() {
        let (g, data) = sharedBehavior
        let model = g.model
        // Two histories with the same items but different recent ones give different distributions
        // (mean total variation over 20 users; at most λ = 0.7 of the mass can move).
        var tv = 0.0
        for u in 0..<20 {
            let h = g.sequence(user: u).prefix(12).map(\.item)
            let reordered = Array(h.suffix(3)) + Array(h.prefix(9))
            let p = g.nextItemProbabilities(user: u, history: h, sessionStart: false)
            let q = g.nextItemProbabilities(user: u, history: reordered, sessionStart: false)
            tv += zip(p, q).reduce(0) { $0 + abs($1.0 - $1.1) } / 2 / 20
        }
        #expect(tv > 0.3, "mean total variation between recent contexts \(tv)")

        let ws = SyntheticBehavior.Workspace(model)
        var realised = [0.0, 0.0], predicted = [0.0, 0.0], variance = [0.0, 0.0], tasteOnly = [0.0, 0.0], n = [0.0, 0.0]
        let all = data.training + data.heldOut
        var byUser = [[SyntheticBehavior.Event]](repeating: [], count: g.configuration.users)
        for e in all { byUser[Int(e.user)].append(e) }
        for (u, events) in byUser.enumerated() {
            ws.load(user: u)
            for e in events.sorted(by: { $0.time < $1.time }) {
                if !ws.history.isEmpty {
                    let recentCategories = Set(ws.history.suffix(3).map { model.itemCategory[Int($0)] })
                    let s = e.sessionStart ? 1 : 0
                    ws.fillProbabilities(sessionStart: e.sessionStart)
                    let pr = ws.probabilities.indices.reduce(0.0) {
                        recentCategories.contains(model.itemCategory[$1]) ? $0 + ws.probabilities[$1] : $0
                    }
                    let z = ws.unconsumedTasteMass()
                    let taste = ws.weights.indices.reduce(0.0) {
                        !ws.consumed[$1] && recentCategories.contains(model.itemCategory[$1]) ? $0 + ws.weights[$1] / z : $0
                    }
                    predicted[s] += pr
                    variance[s] += pr * (1 - pr)
                    tasteOnly[s] += taste
                    realised[s] += recentCategories.contains(model.itemCategory[Int(e.item)]) ? 1 : 0
                    n[s] += 1
                }
                ws.consume(e.item)
            }
        }
        for s in 0..<2 {
            #expect(abs(realised[s] - predicted[s]) < 4 * variance[s].squareRoot() + 1,
                    "realised \(realised[s]) vs predicted \(predicted[s]) ± \(variance[s].squareRoot())")
        }
        let within = realised[0] / n[0], atStart = realised[1] / n[1], taste = tasteOnly[0] / n[0]
        #expect(within > atStart + 0.2, "same category as a recent item: within a session \(within), at a session start \(atStart)")
        #expect(within > taste + 0.3, "within a session \(within), taste × popularity alone \(taste)")
    }

    @Test func behaviourTypes() {
        let (g, data) = sharedBehavior
        var counts: [SyntheticBehavior.Behavior: Int] = [:]
        var affinity: [SyntheticBehavior.Behavior: Double] = [:]
        for e in data.training {
            counts[e.behavior, default: 0] += 1
            affinity[e.behavior, default: 0] += g.model.affinity(user: Int(e.user), item: Int(e.item))
        }
        let total = Double(data.training.count)
        let pv = Double(counts[.pv] ?? 0) / total, buy = Double(counts[.buy] ?? 0) / total
        #expect(pv > 0.75, "pv share \(pv)")
        #expect(buy > 0.005 && buy < 0.1, "buy share \(buy)")
        #expect(SyntheticBehavior.Behavior.allCases.allSatisfy { (counts[$0] ?? 0) > 0 })
        #expect(data.summary.behaviorCounts["pv"] == counts[.pv])
        let meanAffinity = { (b: SyntheticBehavior.Behavior) in affinity[b]! / Double(counts[b]!) }
        #expect(meanAffinity(.buy) > meanAffinity(.pv) + 0.05)
    }

    /// Oracle ≫ popularity ≫ random, realised and (oracle, random) expected under the planted distribution.
    @Test func oracleBeatsPopularityBeatsRandom() throws {
        let g = SyntheticBehavior(seed: 2, configuration: behaviorConfig(users: 800, items: 500, events: 40, truthTop: 20))
        let s = g.generate().summary
        #expect(s.heldOutEvents == 800 && s.k == 10)
        let oracle = try #require(s.oracle.expectedNDCG), random = try #require(s.random.expectedNDCG)
        #expect(s.popularity.expectedNDCG == nil)
        #expect(oracle > 3 * s.popularity.ndcg && s.oracle.ndcg > s.popularity.ndcg + 0.1, "\(s.oracle) vs \(s.popularity)")
        #expect(s.popularity.ndcg > 3 * random && s.popularity.ndcg > s.random.ndcg + 0.02, "\(s.popularity) vs \(s.random)")
        #expect(s.oracle.hitRate > s.popularity.hitRate && s.popularity.hitRate > s.random.hitRate)
        // Realised figures agree with their expectation (800 events: ± 4 standard errors).
        #expect(abs(s.oracle.hitRate - s.oracle.expectedHitRate!) < 4 * (0.25 / 800).squareRoot())
        #expect(abs(s.oracle.ndcg - oracle) < 4 * (0.25 / 800).squareRoot())
        #expect(abs(s.random.hitRate - s.random.expectedHitRate!) < 4 * (0.25 / 800).squareRoot())
    }

    @Test func invalidConfigurationsAreRefused() {
        #expect(throws: SyntheticBehaviorError.self) { try behaviorConfig(items: 10, events: 30).validate() }
        #expect(throws: SyntheticBehaviorError.self) { try behaviorConfig(truthTop: 0).validate() }
        #expect(throws: SyntheticBehaviorError.self) { try behaviorConfig(users: 0).validate() }
        #expect(throws: SyntheticBehaviorError.self) { try behaviorConfig(events: 3, holdout: -1).validate() }
        var c = behaviorConfig()
        c.maxEventGap = 8_000
        #expect(throws: SyntheticBehaviorError.self) { try c.validate() }
        #expect(throws: Never.self) { try behaviorConfig(items: 16, events: 10, holdout: 3).validate() }
        // Users never run out of items: each has at most `items` events.
        let tight = SyntheticBehavior(seed: 1, configuration: behaviorConfig(users: 20, items: 16, events: 12, truthTop: 5))
        let d = tight.generate()
        #expect(d.training.count + d.heldOut.count <= 20 * 16)
        #expect(d.truth.allSatisfy { !$0.isEmpty && $0.count <= 5 })
    }
}
