import Features
import FeatureStore
import Featurize
import Foundation
import StreamRecNumerics
import Streaming
import Testing
import TestSupport

@Suite("behaviour featurize as processes: kill -9 at seeded moments, restart, exactly once", .serialized, .timeLimit(.minutes(6)))
struct BehaviorProcessTests {
    @Test("2 workers, one killed -9 three times and restarted: transitions, user states and popular counts equal one uninterrupted pass (mock and noida-db)",
          arguments: KafkaBrokerKind.allCases)
    func killAndRestart(broker kind: KafkaBrokerKind) throws {
        let seed = ProcessInfo.processInfo.environment["STREAMREC_FAULT_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...1_000_000)
        print("behaviour kill test (\(kind) broker): STREAMREC_FAULT_SEED=\(seed) replays these kill moments")
        let rig = try BehaviourRig(partitions: 4, broker: kind)
        defer { rig.stop() }
        let (redis, cluster) = (rig.redis, rig.cluster)
        let events = behaviourEvents(40_000, users: 400, items: 900, seed: 77)
        let placed = try produceBehaviour(events, topic: "beh", bootstrap: cluster.bootstrapServers, partitions: 4)
        let settings = BehaviorFeaturizerTests.settings()
        let addr = "127.0.0.1:\(redis.port)"
        func args(shard: Int) -> [String] {
            ["featurize", "--kind", "behavior", "--shard", "\(shard)", "--shards", "2",
             "--topic", "beh", "--bootstrap", cluster.bootstrapServers, "--redis", addr, "--batch-size", "64", "--linger-ms", "30",
             "--feature-shards", "2", "--max-pending", "1000000", "--progress-seconds", "1", "--history-length", "\(settings.historyLength)",
             "--consumed-limit", "\(settings.consumedLimit)", "--session-gap-seconds", "\(settings.sessionGapSeconds)",
             "--reward-window", "\(settings.rewardWindow)",
             "--window-seconds", "\(settings.windowSeconds)", "--slide-seconds", "\(settings.slideSeconds)",
             "--lateness-seconds", "\(settings.latenessSeconds)"]
        }
        let conn = try RedisConnection(address: addr)
        func progress(_ partitions: [Int32]) -> Int64 {
            partitions.reduce(0) { $0 + ((try? conn.command(["GET", "sr:progress:beh:\($1)"]).integer) ?? 0) }
        }
        // Worker 1 owns partitions 1 and 3: three kill moments at seeded points of its stream.
        let mine = Int64((placed[1]?.count ?? 0) + (placed[3]?.count ?? 0))
        var rng = SplitMix64(seed: seed)
        let moments = (0..<3).map { _ in Int64(rng.next() % UInt64(mine * 9 / 10)) }.sorted()
        print("kill worker 1 when its progress reaches \(moments) of \(mine) events")
        let other = try StreamrecProcess(args(shard: 0) + ["--until-idle", "4"])
        for moment in moments {
            let w = try StreamrecProcess(args(shard: 1))
            let deadline = ContinuousClock.now + .seconds(60)
            while progress([1, 3]) < moment && w.process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.001) }
            #expect(w.process.isRunning, "worker 1 ended by itself: \(w.stderr.suffix(1500))")
            w.signal(SIGKILL)
            _ = w.wait(timeout: .seconds(10))
        }
        let last = try StreamrecProcess(args(shard: 1) + ["--until-idle", "2"])
        #expect(last.wait(timeout: .seconds(120)) == 0, "stderr: \(last.stderr.suffix(2000))")
        #expect(other.wait(timeout: .seconds(120)) == 0, "stderr: \(other.stderr.suffix(2000))")
        for p in Int32(0)..<4 {
            #expect(try conn.command(["GET", "sr:progress:beh:\(p)"]).integer == Int64(placed[p]?.count ?? 0), "partition \(p) fully covered")
        }

        let reference = BehaviourReference(settings: settings, partitions: placed)
        let stored = try StoredBehaviour(redis: conn, featureShards: 2)
        #expect(stored.transitions.count == reference.transitions.count)
        let (got, want) = (stored.transitions.sorted(), reference.transitions.sorted())
        #expect(got == want ? true : false, "transitions differ: \(Set(got).symmetricDifference(Set(want)).count) differ (none may be lost or emitted twice)")
        #expect(stored.users.count == reference.users.count)
        var differing = 0
        for (name, want) in reference.users where stored.users[name] != want { differing += 1 }
        #expect(differing == 0, "users whose state differs from one uninterrupted pass")
        let store = FeatureStore(redis: conn)
        #expect(try store.popularItems(n: 2_000).items == reference.popular(2_000) ? true : false, "popular counts differ from the reference")
        #expect(try store.behaviorStatus().lateEvents == reference.late)
        #expect(try store.behaviorStatus().events == Int64(events.count))

        // What an operator sees: `popular` and `status` read the same figures.
        let bin = try #require(streamrecBinary())
        let popular = try runProcess(bin, ["popular", "--config", "/dev/null", "--redis", addr, "--json"])
        #expect(popular.status == 0, "\(popular.stderr)")
        let decoded = try JSONDecoder().decode(PopularItems.self, from: Data(popular.stdout.utf8))
        let all = try store.popularItems(n: 10_000).items
        #expect(decoded == (try store.popularItems(n: 17)), "popular --json: \(popular.stdout.prefix(300))")
        #expect(!decoded.items.isEmpty && decoded.items.count == min(17, all.count))
        let text = try runProcess(bin, ["popular", "--config", "/dev/null", "--redis", addr, "--n", "3"])
        #expect(text.stdout.contains("popular items in [") && text.stdout.contains("late events \(reference.late)"), "\(text.stdout)")
        let status = try runProcess(bin, ["status", "--config", "/dev/null", "--redis", addr])
        #expect(status.stdout.contains("behaviour events: \(events.count) (late \(reference.late))"), "\(status.stdout)")
        #expect(status.stdout.contains("transitions appended \(reference.transitions.count)"))
    }
}
