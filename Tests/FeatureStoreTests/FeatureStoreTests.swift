@testable import FeatureStore
import Features
import Foundation
import Streaming
import Testing
import TestSupport

func smallStats(categories: [(Int, String)] = [(0, "aa"), (0, "bb"), (3, "zz")], minFrequency: Int = 3) -> FeatureStats {
    var b = FeatureStatsBuilder()
    let parser = CriteoParser()
    for (field, cat) in categories {
        var cats = Array(repeating: "", count: 26)
        cats[field] = cat
        let line = "1\t" + (0..<13).map { "\($0)" }.joined(separator: "\t") + "\t" + cats.joined(separator: "\t")
        for _ in 0..<minFrequency { b.add(try! parser.parse(line)) }
    }
    return b.build(minFrequency: minFrequency)
}

@Suite("FeatureStore on a real redis-server", .serialized, .timeLimit(.minutes(2)))
struct FeatureStoreTests {
    @Test("transitions streams: a transitions reader reads sr:rl:fs; a rows reader meeting a transitions entry refuses it by name")
    func transitionStreams() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let redis = try RedisConnection(host: "127.0.0.1", port: server.port)
        var b = TransitionBatch(historyLength: 2)
        b.append(user: 3, state: [0, 4], action: 5, reward: 1, done: false, time: 100)
        let source = FeatureBatchSource(topic: "behavior", partition: 1, firstOffset: 0, lastOffset: 0, rejectedRows: 0, producedAtMs: 9)
        let store = FeatureStore(redis: redis, prefix: "t", streams: .transitions)
        _ = try store.commit(CommitUnit(topic: "behavior", partition: 1, firstOffset: 0, lastOffset: 0, shard: 1,
                                        encodedBatch: FeatureBatchCodec.encode(b, source: source), rows: 1))
        let entries = try FeatureStreamReader(redis: redis, prefix: "t", streams: .transitions).range(shard: 1)
        #expect(entries.count == 1 && entries[0].transitions == SourcedTransitionBatch(batch: b, source: source) && entries[0].rows == nil)
        #expect(entries[0].source == source)
        #expect(try FeatureStreamReader(redis: redis, prefix: "t").range(shard: 1).isEmpty)   // sr:fs:1 is another stream
        // A transitions batch where rows are expected (a misconfigured pipeline) is refused by name.
        try redis.command(bytes: [Array("XADD".utf8), Array("t:fs:1".utf8), Array("*".utf8), Array("b".utf8), FeatureBatchCodec.encode(b, source: source)])
        do { _ = try FeatureStreamReader(redis: redis, prefix: "t").range(shard: 1); Issue.record("a rows reader accepted transitions") } catch {
            #expect("\(error)".contains("`transitions`"))
        }
    }

    @Test("userStates: one HMGET, in order, nil for users without state, a corrupt state refused naming the user")
    func userStatesInOrder() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let redis = try RedisConnection(host: "127.0.0.1", port: server.port)
        let store = FeatureStore(redis: redis, prefix: "t")
        let a = UserState(history: [2, 3, 4], consumed: [2, 3, 4], pending: [.init(time: 7, reward: 1), .init(time: 9, reward: 3)])
        let b = UserState(history: [9], consumed: [9])
        for (user, state) in [("ua", a), ("ub", b)] {
            try redis.command(bytes: [Array("HSET".utf8), Array(store.layout.userStates.utf8), Array(user.utf8), state.encoded()])
        }
        #expect(try store.userStates([]) == [])
        #expect(try store.userStates(["ub", "nobody", "ua", "ub"]) == [b, nil, a, b])
        #expect(try store.userStates(["ua"]) == [try store.userState("ua")])
        try redis.command(["HSET", store.layout.userStates, "bad", "xyz"])
        do { _ = try store.userStates(["ua", "bad"]); Issue.record("a corrupt state was decoded") } catch {
            #expect("\(error)".contains("field bad"))
        }
    }

    @Test("commit: committed, duplicate on retry, gap refused; counters, dead letters, lost rows")
    func commitUnits() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let redis = try RedisConnection(host: "127.0.0.1", port: server.port)
        let store = FeatureStore(redis: redis, prefix: "t")
        let x = FeatureBatchCodecTests.sample(rows: 3)
        let bytes = FeatureBatchCodec.encode(x.batch, source: x.source)
        let unit = CommitUnit(topic: "c", partition: 5, firstOffset: 0, lastOffset: 4, shard: 5 % 4, encodedBatch: bytes, rows: 3,
                              deadLetters: [DeadLetter(raw: [0xFF, 0x00, 0x09], offset: 2, reason: "invalid_utf8", detail: "bad"),
                                            DeadLetter(raw: [], offset: 3, reason: "empty_line", detail: "empty")],
                              lostRows: 0, worker: "w1")
        guard case .committed(let id?) = try store.commit(unit) else { Issue.record("not committed"); return }
        #expect(try store.readProgress(topic: "c", partition: 5) == 5)
        #expect(try store.commit(unit) == .duplicate(progress: 5))
        var later = unit; later.firstOffset = 7; later.lastOffset = 9
        #expect(throws: FeatureStoreError.gap(topic: "c", partition: 5, progress: 5, firstOffset: 7)) { try store.commit(later) }
        // A unit with only lost rows and no batch.
        let lostUnit = CommitUnit(topic: "c", partition: 5, firstOffset: 5, lastOffset: 54, shard: 1, encodedBatch: nil, rows: 0, lostRows: 50)
        #expect(try store.commit(lostUnit) == .committed(streamId: nil))
        #expect(try store.readProgress(topic: "c", partition: 5) == 55)
        #expect(try redis.command(["GET", "t:appended:1"]).integer == 1)
        #expect(try redis.command(["GET", "t:rows:1"]).integer == 3)
        #expect(try store.hash("t:deadletter:count") == ["invalid_utf8": "1", "empty_line": "1"])
        #expect(try store.hash("t:lost") == ["c:5": "50"])
        let dl = try redis.command(["XRANGE", "t:deadletter", "-", "+"]).elements ?? []
        #expect(dl.count == 2)
        let fields = dl[0].elements?[1].elements ?? []
        #expect(fields[0].text == "raw" && fields[1].bytes == [0xFF, 0x00, 0x09])
        // The reader sees the batch.
        let reader = FeatureStreamReader(redis: redis, prefix: "t")
        let entries = try reader.read(shard: 1, after: "0-0", count: 10)
        #expect(entries.count == 1 && entries[0].id == id && entries[0].rows == x)
        #expect(try reader.read(shard: 1, after: id, count: 10).isEmpty)
        #expect(try reader.pending(shard: 1) == 1)
        try reader.markTrained(shard: 1, batches: 1)
        #expect(try store.pending(shard: 1) == 0)
        // Retention: trainers set retain; featurize trims below it.
        _ = try store.commit(CommitUnit(topic: "c", partition: 5, firstOffset: 55, lastOffset: 57, shard: 1, encodedBatch: bytes, rows: 3))
        let all = try reader.range(shard: 1)
        #expect(all.count == 2)
        try reader.setRetain(shard: 1, id: all[1].id)
        #expect(try store.applyRetention(shard: 1) == 1)
        #expect(try reader.range(shard: 1).map(\.id) == [all[1].id])
        // Blocking read returns after the timeout with nothing new.
        #expect(try reader.read(shard: 1, after: all[1].id, count: 1, block: .milliseconds(50)).isEmpty)
        // Our SHA1 equals Redis' for the scripts (EVALSHA path, no EVAL per call).
        let loaded = try redis.command(["SCRIPT", "LOAD", "return 1"]).text
        #expect(loaded == LuaScript.sha1("return 1"))
    }

    @Test("snapshot loaded once; second loader reuses it; a different snapshot is refused")
    func snapshotOnce() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let stats = smallStats()
        let a = FeatureStore(redis: try RedisConnection(host: "127.0.0.1", port: server.port))
        let b = FeatureStore(redis: try RedisConnection(host: "127.0.0.1", port: server.port))
        let first = try a.loadSnapshot(stats, source: "one.stats")
        let second = try b.loadSnapshot(stats, source: "two.stats")
        #expect(first.loadedNow && !second.loadedNow)
        #expect(second.loadedFrom == "one.stats")
        #expect(try a.redis.command(["GET", "sr:dict:next_id"]).integer == Int64(stats.nextId))
        #expect(try a.redis.command(["HGET", "sr:dict:0", "aa"]).integer == Int64(stats.id(field: 0, category: "aa")!))
        let other = smallStats(categories: [(1, "q")])
        #expect(throws: FeatureStoreError.self) { try b.loadSnapshot(other, source: "other.stats") }
    }

    @Test("online growth: one script per batch, same id for every worker, caches agree")
    func growth() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let stats = smallStats(minFrequency: 3)
        let a = FeatureStore(redis: try RedisConnection(host: "127.0.0.1", port: server.port))
        let b = FeatureStore(redis: try RedisConnection(host: "127.0.0.1", port: server.port))
        try a.loadSnapshot(stats); try b.loadSnapshot(stats)
        var cacheA = DictionaryCache(snapshot: stats), cacheB = DictionaryCache(snapshot: stats)
        let new = Array("new-cat".utf8)
        // 2 seen by A (below 3), then 1 by B → B's call crosses the threshold.
        #expect(try a.growDictionary(counts: [CategoryCount(field: 4, bytes: new, count: 2)]) == [nil])
        let ids = try b.growDictionary(counts: [CategoryCount(field: 9, bytes: Array("rare".utf8), count: 1),
                                                CategoryCount(field: 4, bytes: new, count: 1),
                                                CategoryCount(field: 9, bytes: Array("rare".utf8), count: 1)])
        // Both "rare" inputs are merged (count 2, still below 3) and get the same answer.
        #expect(ids == [nil, stats.nextId, nil])
        // A sees the same id when it next counts the category, and both caches learn it from the log.
        #expect(try a.growDictionary(counts: [CategoryCount(field: 4, bytes: new, count: 1)]) == [stats.nextId])
        #expect(try cacheA.sync(a) == 1)
        #expect(try cacheB.sync(b) == 1)
        let idA = new.withUnsafeBytes { cacheA.id(field: 4, bytes: $0) }, idB = new.withUnsafeBytes { cacheB.id(field: 4, bytes: $0) }
        #expect(idA == stats.nextId && idB == stats.nextId)
        #expect(try a.redis.command(["GET", "sr:dict:next_id"]).integer == Int64(stats.nextId) + 1)
        #expect(try a.redis.command(["HGET", "sr:dict:pending:9", "rare"]).integer == 2)
        // An assigned category stays in pending as -id, so one lookup tells new, pending and assigned apart.
        #expect(try a.redis.command(["HGET", "sr:dict:pending:4", "new-cat"]).integer == -Int64(stats.nextId))
        let st = try a.status()
        #expect(st.onlineIds == 1 && st.pendingCategories == 1 && st.dictionaryState == "ready")
    }

    @Test("pending counts are bounded per field: below-threshold counts are forgotten at the cap, ids never")
    func pendingCap() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let stats = smallStats(minFrequency: 3)
        let store = FeatureStore(redis: try RedisConnection(host: "127.0.0.1", port: server.port))
        try store.loadSnapshot(stats)
        // One category reaches the threshold first (it gets an id), then 5,000 singletons flood field 7.
        let hot = Array("hot".utf8)
        #expect(try store.growDictionary(counts: [CategoryCount(field: 7, bytes: hot, count: 3)], maxPendingPerField: 200) == [stats.nextId])
        for round in 0..<50 {
            let counts = (0..<100).map { CategoryCount(field: 7, bytes: Array("c\(round)-\($0)".utf8), count: 1) }
            #expect(try store.growDictionary(counts: counts, maxPendingPerField: 200).allSatisfy { $0 == nil })
        }
        let length = try store.redis.command(["HLEN", "sr:dict:pending:7"]).integer ?? -1
        // Each call forgets about as much as it adds once over the cap: bounded near the cap, far below 5,001.
        #expect(length > 0 && length <= 200 + 2 * 100 + 1)
        // The category with an id keeps its marker: counting it again cannot assign a second id.
        #expect(try store.growDictionary(counts: [CategoryCount(field: 7, bytes: hot, count: 5)], maxPendingPerField: 200) == [stats.nextId])
        #expect(try store.redis.command(["GET", "sr:dict:next_id"]).integer == Int64(stats.nextId) + 1)
        let status = try store.status()
        #expect(status.forgottenCounts >= 5_000 - 2 * 200 - 200)
        #expect(status.onlineIds == 1)
    }
}
