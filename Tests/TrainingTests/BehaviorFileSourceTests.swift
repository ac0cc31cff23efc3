import Foundation
import Testing
import Features
import StreamRecNumerics
@testable import Training

@Suite("behaviour file source: the feature workers' transitions from user_behavior.csv")
struct BehaviorFileSourceTests {
    struct T: Hashable, Comparable {
        var user: String, state: [String], action: String, rewards: [Float], done: Bool, time: Int64
        static func < (a: T, b: T) -> Bool { (a.user, a.time, a.action) < (b.user, b.time, b.action) }
    }

    @Test("transitions equal a per-user brute-force reference; bad lines are counted, not trained", arguments: [1, 4, 10])
    func transitionsMatchTheReference(window W: Int) throws {
        var rng = SplitMix64(seed: 17)
        let behaviors = ["pv", "cart", "fav", "buy"]
        var lines: [String] = [], events: [(user: String, item: String, b: Int, time: Int64)] = []
        var t: Int64 = 1_600_000_000
        for k in 0..<600 {
            t += Int64(rng.next() % 900)   // sometimes more than the 1 h gap between a user's events
            let e = (user: "u\(rng.next() % 25)", item: "i\(rng.next() % 40)", b: Int(rng.next() % 4), time: t)
            events.append(e)
            lines.append("\(e.user),\(e.item),\(behaviors[e.b]),\(e.time)")
            if k % 150 == 7 { lines.append("u1,i2,click,\(t)") }      // unknown behaviour
            if k % 200 == 9 { lines.append("u1,,pv,\(t)") }           // empty item
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bfs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("user_behavior.csv")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)

        let rule = TransitionRule(historyLength: 3, consumedLimit: 5, sessionGapSeconds: 3600, rewards: [1, 2, 2, 3], rewardWindow: W)
        let source = try BehaviorFileSource(path: file.path, rule: rule, batchSize: 64)
        var got: [T] = []
        var sizes: [Int] = []
        while let b = try source.next() {
            let tb = try #require(b.transitions)
            sizes.append(tb.count)
            #expect(tb.historyLength == 3 && tb.rewardWindow == W)
            for i in 0..<tb.count {
                got.append(T(user: source.userKey(tb.users[i]) ?? "?", state: tb.state(i).map { $0 == 0 ? "" : source.itemKey($0) ?? "?" },
                             action: source.itemKey(tb.actions[i]) ?? "?", rewards: Array(tb.rewardRow(i)), done: tb.done[i], time: tb.times[i]))
            }
        }
        // Reference: each user's events in file order; event i's transition has the H items
        // before it, done when the user's next event is more than the gap later or there is none,
        // and the rewards of events i… of its session, at most W, then zeros.
        var want: [T] = []
        for user in Set(events.map(\.user)) {
            let mine = events.filter { $0.user == user }
            for (i, e) in mine.enumerated() {
                let before = mine[..<i].suffix(3).map(\.item)
                var end = i   // the session's last event
                while end + 1 < mine.count && mine[end + 1].time - mine[end].time <= 3600 { end += 1 }
                let known = mine[i...min(end, i + W - 1)].map { Float([1, 2, 2, 3][$0.b]) }
                want.append(T(user: user, state: Array(repeating: "", count: 3 - before.count) + before, action: e.item,
                              rewards: known + Array(repeating: 0, count: W - known.count), done: end == i, time: e.time))
            }
        }
        #expect(got.count == events.count)
        #expect(sizes.dropLast().allSatisfy { $0 == 64 } && (1...64).contains(sizes.last ?? 0), "batches of exactly batch_size: \(sizes)")
        #expect(got.sorted() == want.sorted() ? true : false, "transitions differ from the reference")
        #expect(source.rejections.byReason[.unknownBehavior] == 4 && source.rejections.byReason[.emptyId] == 3)
        #expect(source.itemKey(2) == events[0].item && source.userKey(1) == events[0].user)   // ids in first-seen order
    }

    @Test("epochs: each pass replays the file's transitions from fresh user states, tagged with its epoch; ids and rejections once")
    func epochsReplayTheFile() throws {
        let lines = ["u1,i1,pv,100", "u2,i2,pv,110", "u1,i3,buy,120", "u1,i2,click,125", "u2,i1,cart,130", "u1,i2,pv,140"]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bfs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("user_behavior.csv")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        func read(epochs: Int) throws -> (passes: [[String]], epochs: [Int], source: BehaviorFileSource) {
            let source = try BehaviorFileSource(path: file.path, rule: TransitionRule(historyLength: 2), batchSize: 2, epochs: epochs)
            var passes: [[String]] = [], tags: [Int] = []
            while let b = try source.next() {
                let tb = try #require(b.transitions)
                if tags.last != b.epoch { passes.append([]); tags.append(b.epoch) }
                for i in 0..<tb.count {
                    passes[passes.count - 1].append("\(tb.users[i]):\(tb.state(i).map(String.init).joined(separator: " "))>\(tb.actions[i])")
                }
            }
            return (passes, tags, source)
        }
        let once = try read(epochs: 1), thrice = try read(epochs: 3)
        #expect(once.epochs == [1] && once.passes[0].count == 5)
        #expect(thrice.epochs == [1, 2, 3])
        #expect(thrice.passes.allSatisfy { $0 == once.passes[0] }, "every pass starts from empty states: \(thrice.passes)")
        #expect(thrice.source.rejections.byReason[.unknownBehavior] == 1)
    }
}
